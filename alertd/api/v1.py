"""alertd's own endpoints: rules, explain, silence preview, maintenance windows, history, health."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import yaml
from aiohttp import web

from alertd.alert import AlertState
from alertd.api.http import CTX, PRINCIPAL, bool_param, error, needs, page_url, principal_name, read_json
from alertd.api.wire import BadRequest, gettable_alert, parse_api_matchers, parse_time, rfc3339
from alertd.auth import Role
from alertd.matchers import matches_all
from alertd.redact import redact_config
from alertd.rfc3339 import RANGE, writable
from alertd.silence.silences import NotFound
from alertd.store.base import HistoryQuery

PREFIX = "/api/alertd/v1"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/rules", rules)
    r.add_get(f"{PREFIX}/alerts", alerts)
    r.add_get(f"{PREFIX}/alerts/{{fingerprint}}/explain", explain)
    r.add_post(f"{PREFIX}/silences/preview", preview)
    r.add_get(f"{PREFIX}/maintenance", list_maintenance)
    r.add_post(f"{PREFIX}/maintenance", add_maintenance)
    r.add_delete(f"{PREFIX}/maintenance/{{mw_id}}", expire_maintenance)
    r.add_get(f"{PREFIX}/history", history)
    r.add_post(f"{PREFIX}/receivers/{{name}}/test", test_receiver)
    r.add_get(f"{PREFIX}/health", health)
    r.add_get(f"{PREFIX}/config", config)
    r.add_get(f"{PREFIX}/whoami", whoami)
    r.add_get(f"{PREFIX}/openapi.json", openapi)


def _clean(v: Any) -> Any:
    """JSON has no NaN or infinity: a rule value that is not a number becomes null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


@needs(Role.READ)
async def rules(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return web.json_response(
        _clean(
            {
                "rules": ctx.rule_states(),
                "problems": [
                    {"file": p.file, "line": p.line, "field": p.field, "message": p.message}
                    for p in ctx.rule_problems()
                ],
            }
        )
    )


@needs(Role.READ)
async def alerts(request: web.Request) -> web.Response:
    """Every alert the engine holds, pending and recently resolved included, with routing status."""
    ctx = request.app[CTX]
    now = ctx.clock.now()
    include_resolved = bool_param(request, "resolved", False)
    out = []
    for a in ctx.alerts():
        if a.state is AlertState.RESOLVED and not include_resolved:
            continue
        view = gettable_alert(a, ctx.alert_status(a, now), page_url(request))
        view["state"] = a.state.value
        view["value"] = _clean(a.value)
        view["generator"] = a.generator
        out.append(view)
    return web.json_response(sorted(out, key=lambda v: (v["state"] != "firing", v["labels"].get("alertname", ""))))


@needs(Role.READ)
async def explain(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    fp = request.match_info["fingerprint"]
    alert = next((a for a in ctx.alerts() if a.fingerprint == fp), None)
    if alert is None:
        return error(404, f"no current alert with fingerprint {fp}")
    now = ctx.clock.now()
    out = ctx.explain(alert.labels, now)
    for route in out.get("routes", []):
        route["last_notification"] = await ctx.last_notification(route["receiver"], route["group_key"])
    await ctx.silences.refresh()
    out["silences"] = [
        {"id": s.id, "comment": s.comment, "created_by": s.created_by, "ends_at": rfc3339(s.ends_at)}
        for s in ctx.silences.query()
        if s.id in set(out.get("silenced_by", []))
    ]
    out["alert"] = {
        "labels": alert.labels,
        "state": alert.state.value,
        "value": _clean(alert.value),
        "starts_at": rfc3339(alert.starts_at),
        "generator": alert.generator,
    }
    return web.json_response(_clean(out))


@needs(Role.READ)
async def preview(request: web.Request) -> web.Response:
    """The current alerts a proposed silence would match, before it is created: the firing ones,
    and apart the pending ones (waiting out `for`), which it silences if they fire while it lasts."""
    ctx = request.app[CTX]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object with `matchers`")
    matchers = parse_api_matchers(body.get("matchers"))
    now = ctx.clock.now()

    def matched(state: AlertState) -> list[dict[str, Any]]:
        return [
            gettable_alert(a, ctx.alert_status(a, now), page_url(request))
            for a in ctx.alerts()
            if a.state is state and matches_all(matchers, a.labels)
        ]

    firing, pending = matched(AlertState.FIRING), matched(AlertState.PENDING)
    everything = all(m.matches({}) for m in matchers)
    return web.json_response(
        {
            "alerts": firing,
            "count": len(firing),
            "pending": pending,
            "pending_count": len(pending),
            "matches_everything": everything,
        }
    )


@needs(Role.READ)
async def list_maintenance(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await ctx.silences.refresh()
    now = ctx.clock.now()
    return web.json_response([{**m.to_doc(), "state": m.state(now)} for m in ctx.silences.maintenance()])


@needs(Role.SILENCE)
async def add_maintenance(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object with matchers, time_intervals, comment")
    matchers = parse_api_matchers(body.get("matchers"))
    intervals = body.get("time_intervals")
    if not isinstance(intervals, list) or not all(isinstance(i, dict) for i in intervals):
        raise BadRequest(
            "time_intervals: expected a list of Alertmanager time intervals "
            "(e.g. {weekdays: [saturday], times: [{start_time: '02:00', end_time: '04:00'}], location: UTC})"
        )
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise BadRequest("comment: expected a string")
    try:
        mw_id = await ctx.silences.add_maintenance(
            matchers,
            intervals,
            comment=comment,
            created_by=str(body.get("createdBy") or principal_name(request)),
            author=principal_name(request),
        )
    except TypeError as e:
        raise BadRequest(f"time_intervals: {e}") from None
    return web.json_response({"id": mw_id}, status=201)


@needs(Role.SILENCE)
async def expire_maintenance(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        await ctx.silences.expire_maintenance(request.match_info["mw_id"], principal_name(request))
    except NotFound:
        return error(404, f"no maintenance window {request.match_info['mw_id']}")
    return web.json_response({})


def _float(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        v = float(raw)
    except ValueError:
        return parse_time(raw, name)
    if not writable(v):
        raise BadRequest(f"{name}: expected epoch seconds or an RFC 3339 time from {RANGE}")
    return v


@needs(Role.READ)
async def history(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise BadRequest("limit: expected an integer") from None
    q = HistoryQuery(
        since=_float(request, "since"),
        until=_float(request, "until"),
        kind=request.query.get("kind"),
        receiver=request.query.get("receiver"),
        group_key=request.query.get("group_key"),
        alertname=request.query.get("alertname"),
        limit=max(1, min(limit, 1000)),
    )
    entries = await ctx.store.history(q)
    return web.json_response([{**e.to_dict(), "time": rfc3339(e.ts)} for e in entries])


@needs(Role.ADMIN)
async def test_receiver(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    name = request.match_info["name"]
    if name not in ctx.receiver_names():
        return error(404, f"no receiver named {name!r}")
    results = await ctx.test_send(name)
    return web.json_response({"results": [r.to_dict() for r in results], "ok": all(r.ok for r in results)})


@needs(Role.READ)
async def health(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    now = ctx.clock.now()
    return web.json_response(
        _clean(
            {
                "version": ctx.version,
                "replica": ctx.replica,
                "started_at": rfc3339(ctx.started_at),
                "uptime_seconds": now - ctx.started_at,
                "ready": ctx.ready(),
                "stream": ctx.health.to_dict(),
                "observer": ctx.observer_stats(),
                "workers": ctx.workers(),
            }
        )
    )


@needs(Role.READ)
async def config(request: web.Request) -> web.Response:
    """The whole alertd.yaml in force, defaults filled in, redacted by key name and URL
    (alertd.redact). /api/v2/status shows only the routing, in Alertmanager's format."""
    cfg = request.app[CTX].config
    return web.json_response(redact_config(cfg.model_dump(mode="json", by_alias=True, exclude_none=True)))


@needs(Role.READ)
async def whoami(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    p = request.get(PRINCIPAL)
    role = p.role if p is not None else None
    return web.json_response(
        {
            "name": p.name if p is not None else "anonymous",
            "role": role.name.lower() if role is not None else ("read" if not ctx.auth.enabled else None),
            "auth_enabled": ctx.auth.enabled,
            "can_silence": bool(role is not None and role >= Role.SILENCE),
            "can_admin": bool(role is not None and role >= Role.ADMIN),
        }
    )


@needs(Role.READ)
async def openapi(request: web.Request) -> web.Response:
    text = resources.files("alertd.api").joinpath("openapi-alertd.yaml").read_text()
    return web.json_response(yaml.safe_load(text))
