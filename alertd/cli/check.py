"""`alertd check`: validate rule files and the config before they reach the daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alertd import yamlfile
    from alertd.config import Config


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
    if config is not None:
        # what `alertd run` builds before it connects; the daemon only once the rest is sound
        problems.extend(built(config, daemon=not problems))
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


def built(config: Config, *, daemon: bool = True) -> list[yamlfile.Problem]:
    """Problems `alertd run` would stop at before connecting to anything: every receiver (unset
    ${VAR}, unreadable apprise_file, a URL Apprise does not know), then, with `daemon`, the whole
    daemon as `run` builds it (templates, tokens and users files, routes, time intervals)."""
    from alertd.daemon import Daemon
    from alertd.notify.delivery import resolve_receiver
    from alertd.redact import redact_text
    from alertd.yamlfile import FileError, Problem, load_yaml

    doc = load_yaml(config.source) if config.source != "<defaults>" else None
    problems: list[yamlfile.Problem] = []
    for i, receiver in enumerate(config.receivers):
        try:
            resolve_receiver(receiver, config.base_dir)
        except ValueError as e:  # ReceiverError: its message names the receiver, URLs redacted
            where = ("receivers", i, "apprise_file" if "apprise_file" in str(e) else "apprise")
            problems.append(doc.problem(where, str(e)) if doc else Problem(config.source, None, "", str(e)))
    if problems or not daemon:
        return problems
    try:
        Daemon(config)  # constructs everything and connects nothing: sources and stores open in start()
    except FileError as e:
        return list(e.problems)
    except (ValueError, OSError) as e:
        return [Problem(config.source, None, "", redact_text(str(e)))]
    return []
