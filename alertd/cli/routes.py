"""`alertd routes test`: which receivers a label set reaches, and why."""

from __future__ import annotations

import argparse
import sys

from alertd.cli.run import load


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("routes", help="inspect the route tree")
    rsub = p.add_subparsers(dest="routes_command", required=True)
    t = rsub.add_parser(
        "test",
        help="print the receivers a label set reaches",
        description="e.g. alertd routes test alertname=CeleryQueueLong queue=payments severity=critical",
    )
    t.add_argument("labels", nargs="+", metavar="NAME=VALUE")
    t.add_argument("--verify-receivers", action="store_true", help="also check that every receiver's URLs load")
    t.set_defaults(func=routes_test)


def routes_test(args: argparse.Namespace) -> int:
    from alertd.alert import Alert
    from alertd.dispatch.route import build_route

    config = load(args)
    if config is None:
        return 2
    labels = {}
    for item in args.labels:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"not a label: {item!r} (expected name=value)", file=sys.stderr)
            return 2
        labels[name] = value.strip('"')
    if config.route is None:
        # notify.service (and with it Apprise) only for the built-in route of a config without one
        from alertd.notify.config import default_route

        root = build_route(default_route())
    else:
        root = build_route(config.route)
    routes = root.match(labels)
    for r in routes:
        path = " → ".join(p.describe() for p in root.path_to(r))
        group = r.group_labels(labels)
        print(
            f"{r.receiver}\n  route: {path}\n  group: {group}  (wait {r.group_wait:g}s, interval "
            f"{r.group_interval:g}s, repeat {r.repeat_interval:g}s)"
        )
        if r.mute_time_intervals or r.active_time_intervals:
            print(f"  time intervals: active {list(r.active_time_intervals)}, mute {list(r.mute_time_intervals)}")
    print(f"fingerprint {Alert(labels=labels).fingerprint}")
    if args.verify_receivers:
        from alertd.notify.config import CONSOLE_RECEIVER
        from alertd.notify.delivery import ReceiverError, resolve_receiver
        from alertd.notify.template import Templates

        # Checks that the URLs parse and the template compiles; nothing is sent (`notify test` sends).
        failed = 0
        templates = Templates(config.path(config.templates_dir) if config.templates_dir else None, config.base_dir)
        for rc in config.receivers:
            try:
                rec = resolve_receiver(rc, config.base_dir)
                problem = templates.problem(rc.template)
                if problem:
                    raise ReceiverError(rc.name, problem)
                print(f"receiver {rc.name}: OK ({', '.join(rec.redacted())}), template {rc.template}")
            except ReceiverError as e:
                failed += 1
                print(f"receiver {rc.name}: {e}", file=sys.stderr)
        if not config.receivers:
            print(f"receiver {CONSOLE_RECEIVER}: OK (console)")
        return 1 if failed else 0
    return 0
