"""`alertd check`: validate rule files and the config before they reach the daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="validate rule files and alertd.yaml",
        description="Validate rule files (files or directories) and the config; exit 1 on any problem.",
    )
    p.add_argument("paths", nargs="*", help="rule files or directories (default: the config's rule_files)")
    p.set_defaults(func=check)


def check(args: argparse.Namespace) -> int:
    # Imported here: every command module is imported to build the parser (start-up of the others).
    from alertd.config import find_config, load_config
    from alertd.rules.loader import expand_rule_paths, load_rules
    from alertd.yamlfile import FileError, Problem

    problems: list[Problem] = []
    config_path = find_config(args.config)
    try:
        config = load_config(config_path)
    except FileError as e:
        problems.extend(e.problems)
        config = None
    paths = (
        expand_rule_paths(args.paths, Path.cwd())
        if args.paths
        else (expand_rule_paths(config.rule_files, config.base_dir) if config else [])
    )
    rules = 0
    if paths:
        try:
            ruleset = load_rules(paths, max_window=config.observe.retention if config else 3600.0)
            rules = len(ruleset.rules())
        except FileError as e:
            problems.extend(e.problems)
    for p in problems:
        print(p, file=sys.stderr)
    what = f"{rules} rules in {len(paths)} files" + (f" and {config_path}" if config_path else "")
    if problems:
        print(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} found", file=sys.stderr)
        return 1
    if not paths:
        print("no rule files found", file=sys.stderr)
        return 1
    print(f"{what}: OK")
    return 0
