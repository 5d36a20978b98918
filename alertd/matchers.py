r"""Label matchers in Alertmanager's syntax, shared by rules, routes, inhibition and silences.

    name="value"   name!="value"   name=~"regex"   name!~"regex"

Regexes are RE2, anchored (`^(?:regex)$`) as in Alertmanager, whose Go `regexp` is RE2 too: a
match takes time linear in the label's length whatever the pattern, so no matcher that a client
sends (an API filter, a silence) can stall the event loop, and a pattern means in alertd what it
means in Alertmanager. What RE2 has no linear algorithm for (backreferences, lookarounds,
possessive and atomic groups, Python's `\Z`) is refused with a MatcherError naming the matcher.
A label that is absent matches as the empty string, so `queue=""` selects alerts without a queue
label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import re2


class MatcherError(ValueError):
    """A matcher that does not parse; the message quotes it and says what is expected."""


class Op(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


# Label names and the matcher grammar are alertd's own fixed patterns, never a client's: Python's
# `re` is fine for them.
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = ("=~", "!~", "!=", "=")


class Regex(Protocol):
    """A compiled RE2 pattern (google-re2 ships no type stubs)."""

    def match(self, text: str) -> object | None: ...


def _re2_options() -> Any:
    options = re2.Options()
    # A refused pattern is the client's mistake, answered with a 400 or a check error; RE2's own
    # stderr line for it would only be noise in alertd's log.
    options.log_errors = False
    options.never_capture = True  # matchers only ask yes or no: no submatch bookkeeping
    return options


RE2_OPTIONS = _re2_options()


def compile_regex(pattern: str, what: str) -> Regex:
    """An anchored RE2 pattern as Alertmanager builds it; MatcherError (naming `what`) if RE2 refuses it."""
    problem = _go_refuses(pattern)
    if problem is None:
        try:
            return re2.compile(f"^(?:{pattern})$", RE2_OPTIONS)  # type: ignore[no-any-return]
        except re2.error as e:
            problem = _bare_problem(pattern) or _message(e)
        except UnicodeEncodeError:  # a lone surrogate: not text RE2 (or Go) could be given
            problem = "the pattern is not valid UTF-8 text"
    raise MatcherError(f"invalid regex {pattern!r} in {what}: {problem}{_hint(problem)}")


def _bare_problem(pattern: str) -> str | None:
    """RE2's complaint about the pattern as the user wrote it, without the anchors we add around it."""
    try:
        re2.compile(pattern, RE2_OPTIONS)
    except re2.error as e:
        return _message(e)
    return None


def _message(e: Exception) -> str:
    raw = e.args[0] if e.args else e
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _go_refuses(pattern: str) -> str | None:
    """What RE2's C++ parser takes and Go's `regexp` (Alertmanager's) refuses: `\\C`, any single byte."""
    i, literal = 0, False
    while i < len(pattern) - 1:
        if pattern[i] == "\\":
            nxt = pattern[i + 1]
            if literal:
                literal = nxt != "E"
            elif nxt == "Q":
                literal = True
            elif nxt == "C":
                return "invalid escape sequence: \\C"
            i += 2
            continue
        i += 1
    return None


_HINTS = (
    (r"\\Z", r"RE2 writes end of text as \z, and the match is anchored at the end anyway"),
    (r"perl operator", "RE2, like Alertmanager, has no lookarounds or atomic groups"),
    (r"escape sequence: \\[1-9]", "RE2, like Alertmanager, has no backreferences"),
    (r"repetition operator: [*+?}]\+", "RE2, like Alertmanager, has no possessive quantifiers"),
)


def _hint(problem: str) -> str:
    """A pointer from a Perl or Python habit to what RE2 (and Alertmanager) accept."""
    for pattern, hint in _HINTS:
        if re.search(pattern, problem):
            return f" ({hint})"
    return ""


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: Regex | None = field(default=None, compare=False, repr=False, hash=False)

    @classmethod
    def create(cls, name: str, op: Op | str, value: str) -> Matcher:
        op = Op(op)
        if not _NAME.fullmatch(name):
            raise MatcherError(f"invalid label name {name!r}: expected letters, digits and _")
        rx = compile_regex(value, f"matcher for {name!r}") if op in (Op.RE, Op.NRE) else None
        return cls(name, op, value, rx)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op is Op.EQ:
            return v == self.value
        if self.op is Op.NE:
            return v != self.value
        assert self._regex is not None
        try:
            hit = self._regex.match(v) is not None
        except UnicodeEncodeError:  # a lone surrogate from a client's JSON: match what UTF-8 can carry
            hit = self._regex.match(v.encode("utf-8", "replace").decode()) is not None
        return hit if self.op is Op.RE else not hit

    @property
    def is_regex(self) -> bool:
        return self.op in (Op.RE, Op.NRE)

    @property
    def is_equal(self) -> bool:
        return self.op in (Op.EQ, Op.RE)

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{quote(self.value)}"

    # Alertmanager API v2 representation.
    def to_api(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_api(cls, doc: Mapping[str, Any]) -> Matcher:
        if not isinstance(doc, Mapping):
            raise MatcherError(f"a matcher must be an object with name, value, isRegex, got {doc!r}")
        try:
            name, value, is_regex = doc["name"], doc["value"], doc["isRegex"]
        except KeyError as e:
            raise MatcherError(f"matcher {dict(doc)!r} is missing field {e.args[0]!r}") from None
        is_equal = doc.get("isEqual", True)
        if not isinstance(name, str) or not isinstance(value, str):
            raise MatcherError(f"matcher name and value must be strings, got {dict(doc)!r}")
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise MatcherError(f"matcher isRegex and isEqual must be booleans, got {dict(doc)!r}")
        op = {(False, True): Op.EQ, (False, False): Op.NE, (True, True): Op.RE, (True, False): Op.NRE}[
            (is_regex, is_equal)
        ]
        return cls.create(name, op, value)


def quote(value: str) -> str:
    """A label value as matchers (and Alertmanager) write it: double quotes, escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as `queue=~"payments.*"`. Unquoted values are accepted (amtool style)."""
    s = text.strip()
    m = _NAME.match(s)
    if not m:
        raise MatcherError(f'invalid matcher {text!r}: expected a label name first, as in queue="default"')
    name = m.group(0)
    rest = s[m.end() :].lstrip()
    for op in _OPS:
        if rest.startswith(op):
            raw = rest[len(op) :].strip()
            break
    else:
        raise MatcherError(f"invalid matcher {text!r}: expected one of = != =~ !~ after {name!r}")
    if raw.startswith('"'):
        value, end = _unquote(raw, text)
        if raw[end:].strip():
            raise MatcherError(f"invalid matcher {text!r}: unexpected text after the closing quote")
    else:
        if any(c in raw for c in '"{},'):
            raise MatcherError(f'invalid matcher {text!r}: quote values that contain ", {{, }} or ,')
        value = raw
    return Matcher.create(name, op, value)


def _unquote(raw: str, text: str) -> tuple[str, int]:
    """OpenMetrics escapes as Alertmanager reads them: \\n, \\" and \\\\; any other backslash is literal,
    so `task=~"billing\\.charge"` keeps its escaped dot as it does in Alertmanager."""
    out = []
    i = 1
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, c + nxt))
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise MatcherError(f"invalid matcher {text!r}: unterminated quoted value")


def parse_matchers(spec: str | Iterable[str]) -> list[Matcher]:
    """Parse a list of matchers, or one string `{a="b", c=~"d"}` / `a="b",c=~"d"` (amtool style)."""
    if not isinstance(spec, str):
        return [parse_matcher(s) for s in spec]
    s = spec.strip()
    if s.startswith("{"):
        if not s.endswith("}"):
            raise MatcherError(f"invalid matchers {spec!r}: missing closing }}")
        s = s[1:-1]
    return [parse_matcher(part) for part in _split_top(s) if part.strip()]


def _split_top(s: str) -> list[str]:
    """Split on commas that are outside quotes."""
    parts, cur, quoted, i = [], [], False, 0
    while i < len(s):
        c = s[i]
        if quoted and c == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
