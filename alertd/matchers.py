"""Label matchers in Alertmanager's syntax, shared by rules, routes, inhibition and silences.

    name="value"   name!="value"   name=~"regex"   name!~"regex"

Regexes are anchored (`^(?:regex)$`) as in Alertmanager and Prometheus. A label that is absent
matches as the empty string, so `queue=""` selects alerts without a queue label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class MatcherError(ValueError):
    """A matcher that does not parse; the message quotes it and says what is expected."""


class Op(StrEnum):
    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OPS = ("=~", "!~", "!=", "=")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False, hash=False)

    @classmethod
    def create(cls, name: str, op: Op | str, value: str) -> Matcher:
        op = Op(op)
        if not _NAME.fullmatch(name):
            raise MatcherError(f"invalid label name {name!r}: expected letters, digits and _")
        rx = None
        if op in (Op.RE, Op.NRE):
            try:
                rx = re.compile(f"^(?:{value})$")
            except re.error as e:
                raise MatcherError(f"invalid regex {value!r} in matcher for {name!r}: {e}") from None
        return cls(name, op, value, rx)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op is Op.EQ:
            return v == self.value
        if self.op is Op.NE:
            return v != self.value
        assert self._regex is not None
        hit = self._regex.match(v) is not None
        return hit if self.op is Op.RE else not hit

    @property
    def is_regex(self) -> bool:
        return self.op in (Op.RE, Op.NRE)

    @property
    def is_equal(self) -> bool:
        return self.op in (Op.EQ, Op.RE)

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op.value}"{escaped}"'

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
    out = []
    i = 1
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
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
