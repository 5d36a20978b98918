"""alertd's matchers against Alertmanager's own, on the patterns where Python's `re` and RE2 part.

Each row says what the pattern gets in alertd (which must be what Alertmanager's amtool says) and
what Python's `re` would have given: the differential docs/rules.md shows. amtool comes from
Debian's prometheus-alertmanager (.ci/run installs it); `config routes test` routes a label set
through a one-route tree whose matcher is the pattern, with Alertmanager's own matcher code.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from alertd.matchers import Matcher, MatcherError, parse_matcher

REFUSED = "refused"
REDOS = "ReDoS"  # Python's re backtracks for minutes: not run here, see tests/test_redos.py

# (pattern as the regex reaches the matcher, label value, alertd = Alertmanager, Python re)
TABLE: list[tuple[str, str, bool | str, bool | str]] = [
    (r"billing\..*", "billing.charge", True, True),
    (r"a", "a\n", False, True),  # RE2's $ is end of text; Python's also matches before a final \n
    (r".*", "a\nb", False, False),
    (r"(?s).*", "a\nb", True, REFUSED),  # Python 3.11 takes flags only at the very start, before ^(?:
    (r"a\Z", "a", REFUSED, True),  # Python's end of text; RE2 (like Perl) calls it \z
    (r"a\z", "a", True, REFUSED),  # Python 3.11 has no \z
    (r"(?=.*bar).*", "foobar", REFUSED, True),  # lookahead
    (r"(?!celery\.).*", "celery.backend_cleanup", REFUSED, False),  # negative lookahead: use !~
    (r".*(?<=bar)", "foobar", REFUSED, True),  # lookbehind
    (r"(a)\1", "aa", REFUSED, True),  # backreference
    (r"a++", "aa", REFUSED, True),  # possessive quantifier (Python 3.11+)
    (r"(?>a+)", "aa", REFUSED, True),  # atomic group (Python 3.11+)
    (r"\d+", "١٢٣", False, True),  # RE2's \d is ASCII; Python's is any Unicode digit
    (r"\w+", "café", False, True),  # likewise \w
    (r"\pL+", "café", True, REFUSED),  # Unicode classes are written \pL in RE2
    (r"[[:alpha:]]+", "abc", True, False),  # POSIX classes; Python reads a set of ":alph" then "]"
    (r"\x{263a}", "☺", True, REFUSED),
    (r"x{1001}", "x" * 1001, REFUSED, True),  # RE2 and Go cap counted repetition at 1000
    (r"\C", "a", REFUSED, REFUSED),  # RE2's single byte: C++ RE2 has it, Go's regexp does not
    (r"(?i)BILLING", "billing", True, REFUSED),
    (r"(?i:BILLING)", "billing", True, True),
    (r"(?P<t>billing)", "billing", True, True),
    (r"a)|(b", "a", True, True),  # the pattern is pasted into ^(?:...)$ verbatim in both
    (r"(a+)+c", "a" * 40, False, REDOS),
    (r"(x+x+)+y", "x" * 40, False, REDOS),
    (r"(a|aa)+b", "a" * 40, False, REDOS),
    (r"(.*a){12}", "a" * 40 + "b", False, REDOS),
]

# Matcher strings as written in rules, routes, `alertd silence add` and ?filter=: escapes are
# OpenMetrics' as Alertmanager reads them (\n, \", \\), any other backslash stays literal.
STRINGS: list[tuple[str, str, bool]] = [
    (r'x=~"billing\.charge"', "billingXcharge", False),
    (r'x=~"billing\.charge"', "billing.charge", True),
    (r'x=~"billing\\.charge"', "billingXcharge", False),
    (r'x=~"a\d"', "a1", True),
    (r'x="a\nb"', "a\nb", True),
    (r'x="a\"b"', 'a"b', True),
    (r'x="a\tb"', "a\\tb", True),
]


def alertd_verdict(pattern: str, value: str) -> bool | str:
    try:
        return Matcher.create("x", "=~", pattern).matches({"x": value})
    except MatcherError:
        return REFUSED


def python_verdict(pattern: str, value: str) -> bool | str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "[[:" is a possible future set syntax
            rx = re.compile(f"^(?:{pattern})$")
    except re.error:
        return REFUSED
    return rx.match(value) is not None


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@pytest.fixture(scope="module")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool is not installed (apt-get install prometheus-alertmanager; .ci/run does)")
    return path


def alertmanager_verdict(amtool: str, tmp: Path, matcher: str, value: str) -> bool | str:
    """Alertmanager's answer: `amtool config routes test` through a tree of one matching route."""
    cfg = tmp / "am.yml"
    cfg.write_text(
        "route:\n  receiver: miss\n  routes:\n    - receiver: hit\n"
        f"      matchers: ['{matcher.replace(chr(39), chr(39) * 2)}']\n"
        "receivers:\n  - name: miss\n  - name: hit\n"
    )
    out = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={cfg}", f"x={quote(value)}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        assert "error parsing regexp" in out.stderr, out.stderr
        return REFUSED
    return {"hit": True, "miss": False}[out.stdout.strip()]


@pytest.mark.parametrize(("pattern", "value", "expected", "python"), TABLE, ids=[r[0] for r in TABLE])
def test_a_pattern_means_in_alertd_what_it_means_in_alertmanager(
    pattern: str, value: str, expected: bool | str, python: bool | str, amtool: str, tmp_path: Path
) -> None:
    assert alertd_verdict(pattern, value) == expected
    assert alertmanager_verdict(amtool, tmp_path, f"x=~{quote(pattern)}", value) == expected
    if python != REDOS:  # the table's Python column is what `re` does: keep it honest
        assert python_verdict(pattern, value) == python


@pytest.mark.parametrize(("text", "value", "expected"), STRINGS, ids=[s[0] for s in STRINGS])
def test_matcher_strings_unescape_as_alertmanager_reads_them(
    text: str, value: str, expected: bool, amtool: str, tmp_path: Path
) -> None:
    assert parse_matcher(text).matches({"x": value}) is expected
    assert alertmanager_verdict(amtool, tmp_path, text, value) is expected


def test_a_refused_pattern_names_the_matcher_and_what_re2_lacks() -> None:
    for pattern, lacks in [
        ("(?=x)y", "lookarounds"),
        (r"(a)\1", "backreferences"),
        ("a++", "possessive"),
        (r"a\Z", r"\z"),
    ]:
        with pytest.raises(MatcherError) as e:
            parse_matcher(f"task=~{quote(pattern)}")
        assert f"invalid regex {pattern!r} in matcher for 'task'" in str(e.value) and lacks in str(e.value)
