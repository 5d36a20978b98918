"""`alertd test`: rule unit tests fed with Celery events, on a virtual clock."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "test", help="run rule unit tests", description="Run rule unit tests (like promtool test rules)."
    )
    p.add_argument("paths", nargs="+", help="test files or directories of them")
    p.add_argument("--run", metavar="REGEX", help="only tests whose name matches")
    p.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    p.set_defaults(func=test)


def test(args: argparse.Namespace) -> int:
    # The rule engine and its tester load only for this command (start-up of the others).
    from alertd.rules.loader import expand_rule_paths
    from alertd.ruletest import junit_xml, run_test_files

    try:
        results = run_test_files(expand_rule_paths(args.paths, Path.cwd()), args.run)
    except ValueError as e:  # a --run pattern RE2 refuses
        print(f"alertd test: {e}", file=sys.stderr)
        return 2
    for r in results:
        if r.ok:
            print(f"ok    {r.file}: {r.name} ({r.seconds:.2f}s)")
        else:
            print(f"FAIL  {r.file}: {r.name}\n{r.message}\n")
    if args.junit:
        args.junit.write_bytes(junit_xml(results))
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0
