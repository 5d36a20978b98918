"""`alertd ack`: acknowledge a firing group or alert through the API (docs/acknowledge.md).

`alertd ack GROUP_OR_FINGERPRINT` acks; `alertd ack` alone lists the groups with firing alerts
(their keys are what it takes); `alertd ack --list` lists the acks themselves.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from alertd.cli.client import ApiError, Client, add_connection_args, fail, table

FINGERPRINT = re.compile(r"[0-9a-f]{16}")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ack",
        help="acknowledge a firing group or alert: muted until it resolves",
        description="e.g. alertd ack \"root{}{alertname='TaskFailed'}\" -m 'looking into it'. Without a target: "
        "the groups with firing alerts, and their keys. An ack mutes only the alerts firing now; "
        "it ends by itself when they resolve.",
    )
    p.add_argument("target", nargs="?", metavar="GROUP_OR_FINGERPRINT", help="a group key, or an alert's fingerprint")
    p.add_argument("--comment", "-m", default="", help="why, or what is being done")
    until = p.add_mutually_exclusive_group()
    until.add_argument("--until", help="end the ack then at the latest, RFC 3339 (default: alertd's acks.max_duration)")
    until.add_argument(
        "--for", dest="for_", metavar="DURATION", help="end the ack after this long at the latest, e.g. 4h"
    )
    p.add_argument("--list", action="store_true", help="list acks (active; with --expired, ended ones too)")
    p.add_argument("--expired", action="store_true", help="with --list: ended acks too")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    add_connection_args(p)
    p.set_defaults(func=ack)


def ack(args: argparse.Namespace) -> int:
    try:
        client = Client.from_args(args)
        if args.list:
            found = client.request("GET", "/api/alertd/v1/acks", query=[("expired", str(args.expired).lower())])
            return _show(
                args, found["acks"], _ack_rows, ["ID", "Group", "Alerts", "Acked by", "Age", "State", "Comment"]
            )
        if not args.target:
            groups = client.request("GET", "/api/alertd/v1/groups")
            return _show(args, groups, _group_rows, ["Group key", "Receiver", "Firing", "Acked"])
        body: dict[str, Any] = {"comment": args.comment}
        if FINGERPRINT.fullmatch(args.target):
            body["fingerprints"] = [args.target]
        else:
            body["group"] = args.target
        if args.until:
            body["until"] = args.until
        if args.for_:
            body["for"] = args.for_
        out = client.request("POST", "/api/alertd/v1/acks", body)
    except ApiError as e:
        return fail(e)
    if args.output == "json":
        print(json.dumps(out, indent=2))
    else:
        print(f"acknowledged {len(out['fingerprints'])} alert(s): ack {out['id']}, by {out['acked_by']}")
    return 0


def _show(args: argparse.Namespace, rows: list[dict[str, Any]], fmt: Any, headers: list[str]) -> int:
    if args.output == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(table([fmt(r) for r in rows], headers))
    return 0


def _age(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _ack_rows(a: dict[str, Any]) -> list[str]:
    return [
        a["id"],
        a["group"] or "-",
        str(len(a["fingerprints"])),
        a["acked_by"],
        _age(a["age_seconds"]),
        a["state"] + (f" ({a['ended']})" if a["ended"] else ""),
        a["comment"],
    ]


def _group_rows(g: dict[str, Any]) -> list[str]:
    return [g["key"], g["receiver"], str(len(g["firing"])), str(len(g["acked"]))]
