"""Rule labels and annotations are Jinja2 templates, rendered in a sandbox.

The sandbox matters: rule files are edited by many people and rendered inside the daemon; a
template must not reach Python internals. Syntax errors surface at load time with file and line.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2 import TemplateSyntaxError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from alertd.humanize import FILTERS
from alertd.jinjacheck import unknown_name

ENV = SandboxedEnvironment(undefined=Undefined, autoescape=False, keep_trailing_newline=False)
ENV.filters.update(FILTERS)


# A reload compiles the same templates again, a rule pack holds many alike, and Jinja's compile is
# the slowest part of loading rules: compiled templates are kept by their source (they are
# immutable, and rendering one is safe from anywhere).
@functools.lru_cache(maxsize=4096)
def _compiled(source: str) -> JinjaTemplate:
    return ENV.from_string(source)


class Template:
    """A compiled label or annotation; plain strings skip Jinja entirely."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled = _compiled(source) if ("{{" in source or "{%" in source) else None

    def render(self, labels: dict[str, str], value: float | None, details: Mapping[str, Any] | None = None) -> str:
        """`details`: what the observer adds for this alert (e.g. the tasks a lost worker took)."""
        if self._compiled is None:
            return self.source
        try:
            return self._compiled.render(labels=labels, value=value, details=details or {})
        except Exception as e:  # a runtime template error must not stop evaluation; show it instead
            return f"<template error: {e}>"


@functools.lru_cache(maxsize=4096)
def check_template(source: str) -> str | None:
    """None when the template compiles; else the error, for the loader's message."""
    unknown = unknown_name(ENV, source) if ("{{" in source or "{%" in source) else None
    if unknown:
        return f"bad template: {unknown[0]} (template line {unknown[1]})"
    try:
        Template(source)
    except TemplateSyntaxError as e:
        return f"bad template: {e.message} (template line {e.lineno})"
    return None


def render_all(
    templates: dict[str, Template],
    labels: dict[str, str],
    value: float | None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    return {k: t.render(labels, value, details) for k, t in templates.items()}
