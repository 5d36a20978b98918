"""Alertmanager API v2: the paths and JSON shapes amtool, Grafana and Karma already speak."""

from __future__ import annotations

import platform
import re
from typing import Any

from aiohttp import web

from alertd.alert import Alert, AlertState
from alertd.api.amconfig import alertmanager_yaml
from alertd.api.http import CTX, bool_param, error, needs, page_url, principal_name, read_json
from alertd.api.wire import (
    BadRequest,
    gettable_alert,
    gettable_silence,
    parse_annotations,
    parse_api_matchers,
    parse_filters,
    parse_time,
    rfc3339,
)
from alertd.auth import Role
from alertd.matchers import MatcherError, compile_regex, matches_all
from alertd.silence.silences import NotFound, Silence, SilenceError, State

PREFIX = "/api/v2"

# The Alertmanager release whose API v2 alertd serves (docs/api.md says what that covers). Tools
# read versionInfo.version as an Alertmanager version: amtool compares its major.minor with its
# own and warns when they differ, Karma and Grafana pick API features by it. alertd's own
# version is in versionInfo.revision ("alertd-0.1.0").
ALERTMANAGER_API_VERSION = "0.34.0"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/status", status)
    r.add_get(f"{PREFIX}/receivers", receivers)
    r.add_get(f"{PREFIX}/silences", get_silences)
    r.add_post(f"{PREFIX}/silences", post_silences)
    r.add_get(f"{PREFIX}/silence/{{silence_id}}", get_silence)
    r.add_delete(f"{PREFIX}/silence/{{silence_id}}", delete_silence)
    r.add_get(f"{PREFIX}/alerts", get_alerts)
    r.add_post(f"{PREFIX}/alerts", post_alerts)
    r.add_get(f"{PREFIX}/alerts/groups", get_groups)


@needs(Role.READ)
async def status(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return web.json_response(
        {
            "cluster": {
                "name": ctx.replica,
                "status": "ready",
                "peers": [{"name": ctx.replica, "address": ctx.config.api.listen}],
            },
            "versionInfo": {
                "version": ALERTMANAGER_API_VERSION,
                "revision": f"alertd-{ctx.version}",
                "branch": "alertd",
                "buildUser": "alertd",
                "buildDate": "",
                "goVersion": f"python{platform.python_version()}",
            },
            # what amtool's `config show` prints and `config routes` parses with Alertmanager's
            # loader: alertd's routing in Alertmanager's format (alertd.api.amconfig)
            "config": {"original": alertmanager_yaml(ctx.config)},
            "uptime": rfc3339(ctx.started_at),
        }
    )


@needs(Role.READ)
async def receivers(request: web.Request) -> web.Response:
    names = request.app[CTX].receiver_names() if _receivers_match(request) else []
    return web.json_response([{"name": n} for n in names])


def _receivers_match(request: web.Request) -> bool:
    """0.33's `receiver_matchers` filter receivers by their labels. alertd's receivers have none,
    so every receiver matches or none does: as the matchers match an empty label set or not."""
    wanted = parse_filters(request.query.getall("receiver_matchers", []), "receiver_matchers")
    return matches_all(wanted, {})


@needs(Role.READ)
async def get_silences(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await ctx.silences.refresh()
    filters = parse_filters(request.query.getall("filter", []))
    # Alertmanager 0.34's state filters: each state is included unless its parameter is false
    wanted = {state for state in State if bool_param(request, state.value, True)}
    now = ctx.clock.now()
    found = [s for s in ctx.silences.query(filters) if s.state(now) in wanted]
    return web.json_response([gettable_silence(s, now) for s in sorted(found, key=lambda s: _silence_order(s, now))])


def _silence_order(s: Silence, now: float) -> tuple[int, float]:
    """Alertmanager's SortSilences: active (next to end first), pending (next to start first),
    expired (most recently ended first)."""
    state = s.state(now)
    if state is State.ACTIVE:
        return (0, s.ends_at)
    if state is State.PENDING:
        return (1, s.starts_at)
    return (2, -s.ends_at)


@needs(Role.SILENCE)
async def post_silences(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object (a postableSilence)")
    matchers = parse_api_matchers(body.get("matchers"))
    starts = parse_time(body.get("startsAt"), "startsAt")
    ends = parse_time(body.get("endsAt"), "endsAt")
    created_by, comment = body.get("createdBy"), body.get("comment")
    if not isinstance(created_by, str) or not created_by.strip():
        raise BadRequest("createdBy: required, the person responsible for the silence")
    if not isinstance(comment, str):
        raise BadRequest("comment: required, a string saying why")
    sid = body.get("id") or None
    if sid is not None and not isinstance(sid, str):
        raise BadRequest("id: expected a string")
    # absent (amtool knows none): an update keeps the silence's own, an ack's binding among them
    annotations = parse_annotations(body["annotations"]) if body.get("annotations") is not None else None
    try:
        new_id = await ctx.silences.upsert(
            matchers,
            starts,
            ends,
            created_by=created_by.strip(),
            comment=comment,
            author=principal_name(request),
            silence_id=sid,
            annotations=annotations,
        )
    except NotFound:
        return error(404, f"silence {sid} not found")
    return web.json_response({"silenceID": new_id})


MAINTENANCE_HINT = "is a maintenance window: see /api/alertd/v1/maintenance"


def _silence_id(request: web.Request) -> str:
    sid = request.match_info["silence_id"]
    if sid.startswith("mw-"):
        return sid
    if not re.fullmatch(r"[0-9a-fA-F-]{1,64}", sid):
        raise BadRequest(f"silenceID: {sid!r} is not a silence ID")
    return sid


@needs(Role.READ)
async def get_silence(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await ctx.silences.refresh()
    sid = _silence_id(request)
    if sid.startswith("mw-"):
        # its ID shows in silencedBy, so tools look it up here; it has no single start and end
        return error(404, f"{sid} {MAINTENANCE_HINT}")
    try:
        s = ctx.silences.get(sid)
    except NotFound:
        return error(404, f"silence {sid} not found")
    return web.json_response(gettable_silence(s, ctx.clock.now()))


@needs(Role.SILENCE)
async def delete_silence(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    sid = _silence_id(request)
    try:
        if sid.startswith("mw-"):  # `amtool silence expire` with an ID taken from silencedBy
            await ctx.silences.expire_maintenance(sid, principal_name(request))
        else:
            await ctx.silences.expire(sid, principal_name(request))
    except NotFound:
        return error(404, f"silence {sid} not found")
    except SilenceError:
        pass  # already expired: expiring is idempotent
    return web.json_response({})


def _visible(a: Alert) -> bool:
    return a.state is AlertState.FIRING


def alert_views(request: web.Request, alerts: list[Alert], *, with_unprocessed: bool = True) -> list[dict[str, Any]]:
    """Alerts filtered as the v2 query parameters say, in the gettableAlert shape."""
    ctx = request.app[CTX]
    active = bool_param(request, "active", True)
    silenced = bool_param(request, "silenced", True)
    inhibited = bool_param(request, "inhibited", True)
    if with_unprocessed:
        bool_param(request, "unprocessed", True)  # alertd processes alerts as they appear: none are unprocessed
    filters = parse_filters(request.query.getall("filter", []))
    receiver = request.query.get("receiver")
    try:
        receiver_rx = compile_regex(receiver, "receiver") if receiver else None
    except MatcherError as e:
        raise BadRequest(str(e)) from None
    if not _receivers_match(request):
        return []
    now = ctx.clock.now()
    out = []
    for a in alerts:
        if not _visible(a) or not matches_all(filters, a.labels):
            continue
        st = ctx.alert_status(a, now)
        if receiver_rx and not any(receiver_rx.match(r) for r in st.receivers):
            continue
        is_silenced, is_inhibited = bool(st.silenced_by or st.muted_by), bool(st.inhibited_by)
        if (is_silenced and not silenced) or (is_inhibited and not inhibited):
            continue
        if not is_silenced and not is_inhibited and not active:
            continue
        out.append(gettable_alert(a, st, page_url(request)))
    return out


@needs(Role.READ)
async def get_alerts(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    views = alert_views(request, ctx.alerts())
    return web.json_response(sorted(views, key=lambda v: (v["labels"].get("alertname", ""), v["fingerprint"])))


@needs(Role.ADMIN)
async def post_alerts(request: web.Request) -> web.Response:
    return error(400, "alertd evaluates its own rules from Celery events; it does not accept pushed alerts")


@needs(Role.READ)
async def get_groups(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    alert_views(request, [], with_unprocessed=False)  # a bad parameter is a 400 even with no groups
    # 0.34's `muted`: false leaves out groups muted by a time interval of their route
    muted = bool_param(request, "muted", True)
    out = []
    for g in ctx.groups():
        views = alert_views(request, list(g.alerts.values()), with_unprocessed=False)
        if views and not muted and all(v["status"]["mutedBy"] for v in views):
            continue
        if views:
            # routeLabels (0.34): labels a route attaches; alertd's routes attach none
            out.append({"labels": g.labels, "routeLabels": {}, "receiver": {"name": g.receiver}, "alerts": views})
    return web.json_response(sorted(out, key=lambda g: (g["receiver"]["name"], sorted(g["labels"].items()))))
