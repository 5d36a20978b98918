"""`alertd periodic`: every entry of the beat schedule from a running alertd, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any

from alertd.cli.client import ApiError, Client, add_connection_args, fail, table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("periodic", help="periodic tasks: each beat entry's schedule, next run, last run and state")
    p.add_argument("--output", "-o", choices=["text", "json"], default="text", help="json: the API's answer")
    add_connection_args(p)
    p.set_defaults(func=list_entries)


def list_entries(args: argparse.Namespace) -> int:
    try:
        body = Client.from_args(args).request("GET", "/api/alertd/v1/periodic")
    except ApiError as e:
        return fail(e)
    if args.output == "json":
        print(json.dumps(body, indent=2))
        return 0
    if not body["source"]:
        print("no schedule source: set periodic.app in alertd.yaml (docs/periodic.md)")
        return 0
    rows = [_row(e) for e in body["entries"]]
    print(table(rows, ["Entry", "Task", "Schedule", "Next expected", "Last run", "Outcome", "State"]))
    for line in body["problems"] + body["warnings"]:
        print(f"warning: {line}")
    return 0


def _row(e: dict[str, Any]) -> list[str]:
    last = e["last_run"] or {}
    at = last.get("sent_at") or last.get("received_at")
    return [
        e["name"],
        e["task"],
        e["schedule_text"],
        _short(e["next_expected"]),
        _short(at),
        (last.get("outcome", "") + (f" ({last['exception']})" if last.get("exception") else "")) if last else "never",
        e["state"],
    ]


def _short(t: str | None) -> str:
    return t[:19].replace("T", " ") + "Z" if t else "-"
