"""YAML files that users edit: strict loading and errors that name file, line and field.

Stricter than YAML by accident: duplicate keys are errors, and only true/false are booleans
(`on`, `yes`, `NO` stay strings, so a queue called `no` is not silently False).
Every error is a Problem with the file, line, the dotted field path and what was expected.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, Union

import pydantic
import yaml

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class FileError(Exception):
    """One or more problems in user-edited files. str() lists them one per line."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class _StrictLoader(yaml.SafeLoader):
    pass


# Replace YAML 1.1's many booleans with just true/false.
_StrictLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

# libyaml's parser with the same resolvers, ten times faster on a rule pack; a file it refuses is
# parsed again by the pure-Python one, whose error messages the hints below know.
_FastStrictLoader: type[Any] | None = None
if getattr(yaml, "__with_libyaml__", False):

    class _CStrictLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _StrictLoader.yaml_implicit_resolvers

    _FastStrictLoader = _CStrictLoader


@dataclass
class Document:
    """Parsed YAML with the line of every mapping key and sequence item."""

    file: str
    data: Any
    lines: dict[Loc, int]

    def line(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest ancestor that has one."""
        while True:
            if loc in self.lines:
                return self.lines[loc]
            if not loc:
                return None
            loc = loc[:-1]

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.file, self.line(loc), dotted(loc), message)


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_yaml(path: str | Path, text: str | None = None) -> Document:
    """Parse a YAML file. Raises FileError on syntax errors and duplicate keys."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise FileError([Problem(name, None, "", f"cannot read file: {e.strerror}")]) from None
    try:
        try:
            node = yaml.compose(text, Loader=_FastStrictLoader or _StrictLoader)
        except yaml.YAMLError:
            if _FastStrictLoader is None:
                raise
            node = yaml.compose(text, Loader=_StrictLoader)  # to fail with PyYAML's own words
    except yaml.MarkedYAMLError as e:
        line, hint = syntax_hint(e, text)
        said = f"invalid YAML: {hint} (YAML says: {e.problem})" if hint else f"invalid YAML: {e.problem}"
        raise FileError([Problem(name, line, "", said)]) from None
    lines: dict[Loc, int] = {}
    problems: list[Problem] = []
    # one constructor for the document's scalars: a loader costs more to make than a scalar to build
    data = _build(node, (), lines, problems, name, _StrictLoader("")) if node is not None else None
    if problems:
        raise FileError(problems)
    return Document(name, data, lines)


_TEMPLATE_VALUE = re.compile(r"(^|:\s+|-\s+)\{\{")


def syntax_hint(e: yaml.MarkedYAMLError, text: str) -> tuple[int | None, str]:
    """The line to point at and what is most likely wrong there, in words, for PyYAML's usual
    errors (`expected <block end>, but found '?'` says nothing to someone editing a config).
    Some point at where the trouble started (an unclosed quote) rather than where the parser
    gave up. An empty hint: PyYAML's own text is all there is."""
    lines = text.splitlines()
    problem = e.problem or ""
    at = e.problem_mark.line if e.problem_mark else None
    start = e.context_mark.line if e.context_mark else at

    def src(i: int | None) -> str:
        return lines[i] if i is not None and 0 <= i < len(lines) else ""

    def out(i: int | None, hint: str) -> tuple[int | None, str]:
        return (i + 1 if i is not None else None), hint

    for i in dict.fromkeys((at, start)):
        if "\t" in src(i)[: len(src(i)) - len(src(i).lstrip())] or "'\\t'" in problem:
            return out(i, "a tab in the indentation; YAML indents with spaces only")
        if _TEMPLATE_VALUE.search(src(i)):
            return out(
                i, 'a value starting with `{` is a YAML mapping: quote a template, e.g. "{{ labels.queue }} ..."'
            )
    if "mapping values are not allowed" in problem:
        col = e.problem_mark.column if e.problem_mark else 0
        if ": " in src(at)[:col] or src(at)[:col].rstrip().endswith(":"):
            return out(at, 'a second `: ` on one line: quote a value that contains `: `, e.g. summary: "a: b"')
        return out(at, "this line is indented deeper than the key above it, which already has a value")
    if "could not find expected ':'" in problem:
        return out(start, "a line that is not `key: value` (a missing `:`, or no space after it)")
    if "quoted scalar" in (e.context or ""):
        return out(start, "a quote opened here is never closed")
    if "flow sequence" in (e.context or "") or "flow mapping" in (e.context or ""):
        return out(start, "a [...] or {...} not closed, or an item holding `:`, `,`, `[` or `{` that needs quotes")
    if "expected <block end>" in problem:
        if "'-'" in problem or "'?'" in problem:
            return out(at, "a `- ` list item and a `key:` at one indentation: one of them is indented wrongly")
        return out(at, "this line's indentation does not match the lines above; keys of one mapping line up")
    if "cannot start any token" in problem:
        return out(at, "a value starting with `%`, `@` or a backquote must be quoted")
    return out(at, "")


def _build(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], problems: list[Problem], name: str, loader: yaml.SafeLoader
) -> Any:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = (
                yaml.load(yaml.serialize(knode), Loader=_StrictLoader)
                if not isinstance(knode, yaml.ScalarNode)
                else loader.construct_object(knode)
            )
            sub = (*loc, key if isinstance(key, str | int) else str(key))
            if key in out:
                problems.append(Problem(name, knode.start_mark.line + 1, dotted(sub), "duplicate key"))
                continue
            lines[sub] = knode.start_mark.line + 1
            out[key] = _build(vnode, sub, lines, problems, name, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), lines, problems, name, loader) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def validate(model: type[M], doc: Document, data: Any = None, root: Loc = ()) -> M:
    """Validate doc.data (or `data` found at `root` in the doc) with a pydantic model.

    Errors become a FileError whose problems carry the line of the offending field and, for an
    unknown key, the nearest valid key.
    """
    payload = doc.data if data is None else data
    try:
        return model.model_validate(payload)
    except pydantic.ValidationError as err:
        raise FileError(validation_problems(err, doc, model, root)) from None


def validation_problems(
    err: pydantic.ValidationError, doc: Document, model: type[pydantic.BaseModel], root: Loc = ()
) -> list[Problem]:
    problems = []
    for e in err.errors(include_url=False):
        loc: Loc = tuple(p for p in e["loc"] if isinstance(p, str | int))
        # pydantic puts tagged-union / function-validator names in loc; keep only real path parts.
        loc = _real_path(doc, root, loc)
        full = (*root, *loc)
        msg = _message(e)
        if e["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            allowed = allowed_keys(model, loc[:-1])
            near = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
            msg = f"unknown key {loc[-1]!r}" + (f"; did you mean {near[0]!r}?" if near else "")
            if allowed:
                msg += f" (expected one of: {', '.join(sorted(allowed))})"
        problems.append(doc.problem(full, msg))
    return sorted(problems, key=lambda p: p.line or 0)


def _message(e: Any) -> str:
    msg = str(e["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if e["type"] == "missing":
        return "required field is missing"
    inp = e.get("input")
    shown = isinstance(inp, str | int | float) and repr(inp) in msg
    if (
        e["type"] not in ("missing", "extra_forbidden")
        and isinstance(inp, str | int | float)
        and len(str(inp)) < 80
        and not shown
    ):
        msg += f" (got {inp!r})"
    return msg


def _real_path(doc: Document, root: Loc, loc: Loc) -> Loc:
    """Drop the names pydantic adds for union members and validators ("MetricRule",
    "function-after[...]"): keep list indexes, keys present in the file, and snake_case keys
    (a missing or unknown key is not in the file but is still a real path part)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, int) or (*root, *out, part) in doc.lines or not re.search(r"[A-Z\[\]-]", part):
            out.append(part)
    return tuple(out)


def allowed_keys(model: type[pydantic.BaseModel], loc: Loc) -> list[str]:
    """Field names (and aliases) valid at `loc` below `model`, best effort through lists/dicts/unions."""
    candidates: list[Any] = [model]
    for part in loc:
        nxt: list[Any] = []
        for tp in candidates:
            for t in _unwrap(tp):
                if isinstance(part, int) or (isinstance(t, type) and not issubclass(t, pydantic.BaseModel)):
                    args = typing.get_args(t) if not isinstance(t, type) else ()
                    nxt.extend(args[-1:] if args else [])
                    if isinstance(part, int):
                        nxt.append(t)
                elif isinstance(t, type) and issubclass(t, pydantic.BaseModel) and part in t.model_fields:
                    nxt.append(t.model_fields[part].annotation)
                else:
                    origin = typing.get_origin(t)
                    if origin in (list, tuple, set, frozenset, Sequence) and isinstance(part, int):
                        nxt.extend(typing.get_args(t)[:1])
                    elif origin is dict:
                        nxt.extend(typing.get_args(t)[1:2])
        candidates = nxt
    keys: set[str] = set()
    for tp in candidates:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, pydantic.BaseModel):
                for fname, f in t.model_fields.items():
                    if f.init is not False:  # computed/internal fields are not for users to write
                        keys.add(f.alias or fname)
    return sorted(keys)


def _unwrap(tp: Any) -> Iterable[Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        yield from _unwrap(typing.get_args(tp)[0])
    elif origin in (Union, types.UnionType):
        for a in typing.get_args(tp):
            yield from _unwrap(a)
    elif origin in (list, tuple, set, frozenset):
        yield from _unwrap(typing.get_args(tp)[0]) if typing.get_args(tp) else ()
    else:
        yield tp
