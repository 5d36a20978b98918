"""`alertd silence add|query|expire`: silences through the API, as amtool does."""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

from alertd.cli.client import ApiError, Client, add_connection_args, fail, table
from alertd.durations import DurationError, parse_duration
from alertd.matchers import MatcherError, parse_matcher
from alertd.rfc3339 import TimeError, format_time, parse_time, writable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("silence", help="add, query and expire silences")
    ssub = p.add_subparsers(dest="silence_command", required=True)
    add = ssub.add_parser(
        "add",
        help="silence alerts matching all MATCHERS",
        description="e.g. alertd silence add 'queue=\"payments\"' --duration 2h --comment 'deploy 4.2'",
    )
    add.add_argument("matchers", nargs="+", metavar="MATCHER")
    add.add_argument("--duration", "-d", default="1h", help="how long (default 1h)")
    add.add_argument("--start", help="when it starts, RFC 3339 (default: now)")
    add.add_argument("--comment", "-c", required=True, help="why: shown to whoever wonders where the pages went")
    add.add_argument("--author", "-a", help="who is responsible (default: the API token's name, as history records it)")
    add_connection_args(add)
    add.set_defaults(func=add_silence)
    pv = ssub.add_parser(
        "preview", help="show the firing (and pending) alerts a silence with these MATCHERS would match"
    )
    pv.add_argument("matchers", nargs="+", metavar="MATCHER")
    add_connection_args(pv)
    pv.set_defaults(func=preview_silence)
    q = ssub.add_parser("query", help="list silences (active and pending; --expired for those too)")
    q.add_argument("matchers", nargs="*", metavar="MATCHER")
    q.add_argument("--expired", action="store_true")
    q.add_argument("--quiet", "-q", action="store_true", help="only IDs")
    add_connection_args(q)
    q.set_defaults(func=query_silences)
    ex = ssub.add_parser("expire", help="expire silences by ID")
    ex.add_argument("ids", nargs="+", metavar="ID")
    add_connection_args(ex)
    ex.set_defaults(func=expire_silences)


def add_silence(args: argparse.Namespace) -> int:
    try:
        matchers = [parse_matcher(m).to_api() for m in args.matchers]
        duration = parse_duration(args.duration)
    except (MatcherError, DurationError) as e:
        print(f"alertd: {e}", file=sys.stderr)
        return 2
    start = args.start or format_time(time.time())
    try:
        starts_at = parse_time(start)
    except TimeError as e:
        print(f"alertd: --start: {e}", file=sys.stderr)
        return 2
    if not writable(starts_at + duration):
        print("alertd: --duration: the silence would end after 9999-12-31T23:59:59Z, past RFC 3339", file=sys.stderr)
        return 2
    end = format_time(starts_at + duration)
    try:
        client = Client.from_args(args)
        author = args.author or _token_name(client)
        body = {"matchers": matchers, "startsAt": start, "endsAt": end, "createdBy": author, "comment": args.comment}
        out = client.request("POST", "/api/v2/silences", body)
    except ApiError as e:
        return fail(e)
    print(out["silenceID"])
    return 0


def _token_name(client: Client) -> str:
    """Who the API says the token is: the name history records as the silence's author. The
    login name of whoever runs the CLI (`root` on a server) says nothing; without a token
    (the API then refuses the silence anyway) it is all there is."""
    name = client.request("GET", "/api/alertd/v1/whoami").get("name") if client.token else None
    return str(name) if name and name != "anonymous" else getpass.getuser()


def preview_silence(args: argparse.Namespace) -> int:
    try:
        out = Client.from_args(args).request("POST", "/api/alertd/v1/silences/preview", {"matchers": args.matchers})
    except ApiError as e:
        return fail(e)
    if out["matches_everything"]:
        print("warning: these matchers match every alert", file=sys.stderr)
    print(f"{out['count']} firing alert(s) would be silenced")
    _list(out["alerts"])
    # Pending alerts (waiting out `for`) have not paged yet; the silence would hold their first
    # page if they fire while it lasts. An older server's reply has no such field.
    if out.get("pending_count"):
        print(f"{out['pending_count']} pending alert(s) would be silenced too if they fire while it lasts")
        _list(out["pending"])
    return 0


def _list(alerts: list[dict[str, Any]]) -> None:
    for a in alerts:
        labels = " ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k != "alertname")
        print(f"  {a['labels'].get('alertname', '')}  {labels}")


def query_silences(args: argparse.Namespace) -> int:
    try:
        found = Client.from_args(args).request("GET", "/api/v2/silences", query=[("filter", m) for m in args.matchers])
    except ApiError as e:
        return fail(e)
    rows = [s for s in found if args.expired or s["status"]["state"] != "expired"]
    if args.quiet:
        print("\n".join(s["id"] for s in rows))
        return 0
    print(
        table(
            [
                [
                    s["id"],
                    ",".join(_matcher(m) for m in s["matchers"]),
                    s["status"]["state"],
                    s["endsAt"][:19] + "Z",
                    s["createdBy"],
                    s["comment"],
                ]
                for s in rows
            ],
            ["ID", "Matchers", "State", "Ends", "Created by", "Comment"],
        )
    )
    return 0


def _matcher(m: dict[str, object]) -> str:
    op = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}[
        (bool(m["isRegex"]), bool(m.get("isEqual", True)))
    ]
    return f'{m["name"]}{op}"{m["value"]}"'


def expire_silences(args: argparse.Namespace) -> int:
    try:
        client = Client.from_args(args)
    except ApiError as e:
        return fail(e)
    code = 0
    for sid in args.ids:
        try:
            client.request("DELETE", f"/api/v2/silence/{sid}")
            print(f"expired {sid}")
        except ApiError as e:
            code = fail(e)
    return code
