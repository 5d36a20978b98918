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
    t.add_argument(
        "--output", "-o", choices=["text", "json"], default="text", help="json: for scripts (as amtool -o json)"
    )
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
        from alertd.config import default_route

        root = build_route(default_route())
    else:
        root = build_route(config.route)
    from alertd.durations import format_duration
    from alertd.matchers import quote

    routes = root.match(labels)
    fingerprint = Alert(labels=labels).fingerprint
    if args.output == "json":
        import json

        found = [
            {
                "receiver": r.receiver,
                "path": [p.describe() for p in root.path_to(r)],
                "group_labels": r.group_labels(labels),
                "group_wait": format_duration(r.group_wait),
                "group_interval": format_duration(r.group_interval),
                "repeat_interval": format_duration(r.repeat_interval),
                "active_time_intervals": list(r.active_time_intervals),
                "mute_time_intervals": list(r.mute_time_intervals),
                "escalate": [{"after": format_duration(s.after), "receiver": s.receiver} for s in r.escalate],
            }
            for r in routes
        ]
        print(json.dumps({"routes": found, "fingerprint": fingerprint}, indent=2))
    for r in routes if args.output == "text" else ():
        path = " → ".join(p.describe() for p in root.path_to(r))
        # the group as a label set, written the way matchers and Alertmanager write one
        group = "{" + ", ".join(f"{k}={quote(v)}" for k, v in sorted(r.group_labels(labels).items())) + "}"
        print(
            f"{r.receiver}\n  route: {path}\n  group: {group}  (wait {format_duration(r.group_wait)}, interval "
            f"{format_duration(r.group_interval)}, repeat {format_duration(r.repeat_interval)})"
        )
        if r.mute_time_intervals or r.active_time_intervals:
            active, mute = ", ".join(r.active_time_intervals) or "-", ", ".join(r.mute_time_intervals) or "-"
            print(f"  time intervals: active {active}; mute {mute}")
        if r.escalate:
            # measured from the incident's first page to the route's receiver (docs/routing.md)
            steps = ", ".join(f"{s.receiver} after {format_duration(s.after)}" for s in r.escalate)
            print(f"  escalate unless acknowledged: {steps}")
    if args.output == "text":
        print(f"fingerprint {fingerprint}")
    if args.verify_receivers:
        from alertd.config import CONSOLE_RECEIVER
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
