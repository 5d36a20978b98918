"""`alertd alert query`: the alerts alertd has firing now, with what silences or inhibits them."""

from __future__ import annotations

import argparse

from alertd.cli.client import ApiError, Client, add_connection_args, fail, table


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("alert", help="query alerts")
    asub = p.add_subparsers(dest="alert_command", required=True)
    q = asub.add_parser("query", help="firing alerts, optionally filtered by MATCHERs")
    q.add_argument("matchers", nargs="*", metavar="MATCHER")
    q.add_argument("--silenced", action="store_true", help="include silenced and inhibited alerts")
    add_connection_args(q)
    q.set_defaults(func=query_alerts)


def query_alerts(args: argparse.Namespace) -> int:
    query = [("filter", m) for m in args.matchers]
    if not args.silenced:
        query += [("silenced", "false"), ("inhibited", "false")]
    try:
        alerts = Client.from_args(args).request("GET", "/api/v2/alerts", query=query)
    except ApiError as e:
        return fail(e)
    rows = []
    for a in alerts:
        labels = {k: v for k, v in a["labels"].items() if k != "alertname"}
        st = a["status"]
        why = (
            ("silenced " + ",".join(st["silencedBy"]))
            if st["silencedBy"]
            else ("inhibited" if st["inhibitedBy"] else st["state"])
        )
        rows.append(
            [
                a["labels"].get("alertname", ""),
                a["startsAt"][:19] + "Z",
                " ".join(f"{k}={v}" for k, v in sorted(labels.items())),
                a["annotations"].get("summary", ""),
                why,
            ]
        )
    print(table(rows, ["Alertname", "Starts", "Labels", "Summary", "State"]))
    return 0
