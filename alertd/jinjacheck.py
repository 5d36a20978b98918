"""Filter and test names a Jinja template uses that its environment lacks, with the nearest one.

Jinja reports an unknown filter at compile time only outside conditional blocks (inside
`{% if %}` it fails at render time, in the middle of a page), and never suggests a name; metric
typos in rules get "did you mean", so template typos (`| duratoin`) get it too, at load time.
"""

from __future__ import annotations

import difflib

from jinja2 import Environment, TemplateSyntaxError, nodes


def unknown_name(env: Environment, source: str) -> tuple[str, int] | None:
    """(message, template line) for the first unknown filter or test, or None (also when the
    template does not parse: compiling it reports that)."""
    try:
        tree = env.parse(source)
    except TemplateSyntaxError:
        return None
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        kind, known = ("filter", env.filters) if isinstance(node, nodes.Filter) else ("test", env.tests)
        if node.name not in known:
            near = difflib.get_close_matches(node.name, list(known), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            return f"no {kind} named {node.name!r}{hint}", node.lineno
    return None
