"""`alertd check`: validate rule files and the config before they reach the daemon.

As promtool: `check config [FILE]` and `check rules PATH...`. Plain `check PATH...` recognises each
file by its top-level keys (a rule file has `groups`, a config broker/route/receivers/...), so
`alertd check alertd.yaml` checks a config instead of reporting its keys as unknown rule fields.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from alertd import yamlfile
    from alertd.config import Config

Kind = Literal["config", "rules"]

USAGE = "alertd check [config [FILE] | rules PATH... | PATH...]"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="validate alertd.yaml and rule files",
        usage=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Validate the config and rule files; exit 1 on any problem.

  check config [FILE]   alertd.yaml (FILE, else --config or where `run` looks) and its
                        rule_files, building all `alertd run` builds short of connecting
  check rules PATH...   rule files or directories of them, nothing else
  check [PATH...]       each file recognised as a config or a rule file by its top-level
                        keys; without PATH, the config and its rule_files
  check events          listen to the broker's events (--listen seconds) and warn of workers
                        without -E and producers without task_send_sent_event""",
    )
    p.add_argument("--listen", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("paths", nargs="*", metavar="PATH", help=argparse.SUPPRESS)
    p.set_defaults(func=check)


def file_kind(path: Path) -> Kind | None:
    """What a YAML file is by its top-level keys; None when it cannot tell (unreadable, not a
    mapping, neither kind of key): such a file is read as a rule file, whose errors say why."""
    from alertd.config import Config
    from alertd.yamlfile import FileError, load_yaml

    if not path.is_file():
        return None
    try:
        data = load_yaml(path).data
    except FileError:
        return None
    if not isinstance(data, dict):
        return None
    if "groups" in data:
        return "rules"
    return "config" if set(data) & set(Config.model_fields) else None


def wrong_kind(path: Path, kind: Kind) -> yamlfile.Problem:
    """The problem for a file given to the other subcommand, naming the one that was meant."""
    from alertd.yamlfile import Problem

    if kind == "config":
        return Problem(str(path), None, "", f"this is an alertd config, not a rule file: alertd check config {path}")
    return Problem(
        str(path),
        None,
        "",
        f"this is a rule file (top-level `groups`), not an alertd config: alertd check rules {path}"
        " (a config lists rule files under rule_files)",
    )


def check(args: argparse.Namespace) -> int:
    # Imported here: every command module is imported to build the parser (start-up of the others).
    from alertd.config import find_config
    from alertd.rules.loader import expand_rule_paths

    words = list(args.paths)
    if words == ["events"]:
        from alertd.cli.check_events import check_events

        return check_events(args)
    mode = "auto"
    if words == ["rules"] and Path("rules").is_dir():
        mode = "rules"  # `alertd check rules` alone, with a ./rules directory: that directory
    elif words and words[0] in ("config", "rules") and not (len(words) == 1 and Path(words[0]).is_file()):
        mode, words = words[0], words[1:]
    if mode == "config" and len(words) > 1:
        print(f"usage: {USAGE}\nalertd check config: one config file (rule files: alertd check rules)", file=sys.stderr)
        return 2
    if mode == "rules" and not words:
        print(f"usage: {USAGE}\nalertd check rules: give rule files or directories", file=sys.stderr)
        return 2
    paths = expand_rule_paths(words, Path())  # relative paths stay as typed, in messages too
    kinds = {p: file_kind(p) for p in paths}
    problems: list[yamlfile.Problem] = []
    configs: list[Path | None]  # each checked in full; None: the built-in defaults
    if mode == "config":
        configs = [*paths] or [find_config(args.config)]
        if configs[0] is None:
            print("alertd check config: no alertd.yaml found; give FILE or --config", file=sys.stderr)
            return 1
        if kinds.get(configs[0]) == "rules":
            problems.append(wrong_kind(configs[0], "rules"))
            configs = []
        rule_args: list[Path] = []
    elif mode == "rules":
        problems += [wrong_kind(p, "config") for p in paths if kinds[p] == "config"]
        rule_args = [p for p in paths if kinds[p] != "config"]
        configs = []
    else:
        configs = [*(p for p in paths if kinds[p] == "config")] or [find_config(args.config)]
        rule_args = [p for p in paths if kinds[p] != "config"]
    summaries: list[str] = []
    if mode == "rules":
        # only rules; an explicit --config still sets the longest window a rule may use
        retention = _retention(Path(args.config) if args.config else None, problems)
        summaries.append(_check_rules(rule_args, retention, problems))
    for path in configs:
        summaries.append(_check_config(path, rule_args, problems))
    for p in dict.fromkeys(problems):  # rule files given with several configs are checked with each
        print(p, file=sys.stderr)
    if problems:
        n = len(dict.fromkeys(problems))
        print(f"{n} problem{'s' if n != 1 else ''} found", file=sys.stderr)
        return 1
    if all(" in 0 files" in s for s in summaries):
        print("no rule files found", file=sys.stderr)
        return 1
    for s in summaries:
        print(f"{s}: OK")
    return 0


def _retention(path: Path | None, problems: list[yamlfile.Problem]) -> float:
    from alertd.config import Config, load_config
    from alertd.yamlfile import FileError

    try:
        return load_config(path).observe.retention
    except FileError as e:
        problems.extend(e.problems)
        return Config().observe.retention


def _check_rules(paths: list[Path], max_window: float, problems: list[yamlfile.Problem]) -> str:
    from alertd.rules.loader import load_rules
    from alertd.yamlfile import FileError

    rules = 0
    if paths:
        try:
            rules = len(load_rules(paths, max_window=max_window).rules())
        except FileError as e:
            problems.extend(e.problems)
    return f"{rules} rules in {len(paths)} files"


def _check_config(path: Path | None, rule_args: list[Path], problems: list[yamlfile.Problem]) -> str:
    """A config, the given rule files (else its own rule_files), and all `run` builds from them."""
    from alertd.config import Config, load_config
    from alertd.rules.loader import expand_rule_paths
    from alertd.yamlfile import FileError

    config: Config | None
    try:
        config = load_config(path)
    except FileError as e:
        problems.extend(e.problems)
        config = None
    paths = rule_args or (expand_rule_paths(config.rule_files, config.base_dir) if config else [])
    summary = _check_rules(paths, config.observe.retention if config else Config().observe.retention, problems)
    if config is not None:
        # what `alertd run` builds before it connects; the daemon only once the rest is sound
        problems.extend(built(config, daemon=not problems))
    return summary + (f" and {path}" if path else "")


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
