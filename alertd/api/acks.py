"""Acknowledgements in alertd's API (`/api/alertd/v1/acks`) and the notifications' signed links.

An ack (alertd.ack) mutes the alerts of a group, or the alerts named by fingerprint, that are
firing when it is made, and ends by itself when they resolve. The links (`/link/ack`,
`/link/silence`) need no login: their signature is the permission, for one group and one action.
A GET of a link only shows a page whose button POSTs, so a chat unfurler fetching it does nothing.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from alertd.ack.links import ACK, PATH, Grant, LinkRefused, verify
from alertd.ack.model import Ack, AckError
from alertd.alert import Alert, AlertState
from alertd.api.context import ApiContext
from alertd.api.http import CTX, bool_param, needs, principal_name, read_json
from alertd.api.wire import BadRequest, parse_time, rfc3339
from alertd.auth import Role
from alertd.durations import parse_duration
from alertd.matchers import Matcher
from alertd.rfc3339 import writable

PREFIX = "/api/alertd/v1"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/groups", list_groups)
    r.add_get(f"{PREFIX}/acks", list_acks)
    r.add_post(f"{PREFIX}/acks", post_ack)
    r.add_get(PATH + "{action}", link_page)
    r.add_post(PATH + "{action}", link_act)


def _view(ack: Ack, ctx: ApiContext) -> dict[str, Any]:
    return ack.to_dict(ctx.clock.now())


@needs(Role.READ)
async def list_acks(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    await ctx.silences.refresh()
    include_expired = bool_param(request, "expired", True)
    return web.json_response({"acks": [_view(a, ctx) for a in ctx.acks.all(include_expired=include_expired)]})


@needs(Role.READ)
async def list_groups(request: web.Request) -> web.Response:
    """The aggregation groups with firing alerts, by key (what an ack or a link names), with their acks."""
    ctx = request.app[CTX]
    await ctx.silences.refresh()
    acked = ctx.acks.active_by_fingerprint()
    out = []
    for g in ctx.groups():
        firing = sorted(a.fingerprint for a in g.alerts.values() if a.state is AlertState.FIRING)
        if firing:
            acks = {fp: acked[fp].id for fp in firing if fp in acked}
            out.append({"key": g.key, "receiver": g.receiver, "labels": g.labels, "firing": firing, "acked": acks})
    return web.json_response(sorted(out, key=lambda g: g["key"]))


def _group_alerts(ctx: ApiContext, key: str) -> tuple[list[Alert], dict[str, str]]:
    group = next((g for g in ctx.groups() if g.key == key), None)
    if group is None:
        raise AckError(f"no group {key!r} (GET /api/alertd/v1/groups lists them)")
    return [a for a in group.alerts.values() if a.state is AlertState.FIRING], dict(group.labels)


@needs(Role.SILENCE)
async def post_ack(request: web.Request) -> web.Response:
    """{"group": key} or {"fingerprints": [...]}, "comment", and optionally "until" (RFC 3339) or "for"."""
    ctx = request.app[CTX]
    body = await read_json(request)
    if not isinstance(body, dict):
        raise BadRequest('expected a JSON object such as {"group": "<group key>", "comment": "on it"}')
    comment = body.get("comment", "")
    if not isinstance(comment, str):
        raise BadRequest("comment: expected a string")
    until = _until(body, ctx.clock.now())
    group, fps = body.get("group"), body.get("fingerprints")
    labels: dict[str, str] = {}
    if isinstance(group, str) and group and fps is None:
        alerts, labels = _group_alerts(ctx, group)
    elif group is None and isinstance(fps, list) and fps and all(isinstance(f, str) for f in fps):
        wanted = set(fps)
        alerts = [a for a in ctx.alerts() if a.fingerprint in wanted and a.state is AlertState.FIRING]
        group = ""
    else:
        raise BadRequest('expected one of "group" (a group key) or "fingerprints" (a list of alert fingerprints)')
    by = body.get("by") or principal_name(request)
    if not isinstance(by, str):
        raise BadRequest("by: expected a string")
    ack = await ctx.acks.ack(alerts, group=group, group_labels=labels, by=by, comment=comment, until=until)
    return web.json_response(_view(ack, ctx), status=201)


def _until(body: dict[str, Any], now: float) -> float | None:
    until = None
    if body.get("until") is not None:
        until = parse_time(body["until"], "until")
    elif body.get("for") is not None:
        if not isinstance(body["for"], str):
            raise BadRequest('for: expected a duration such as "4h"')
        try:
            until = now + parse_duration(body["for"])
        except ValueError as e:
            raise BadRequest(f"for: {e}") from None
    if until is not None and not writable(until):
        raise BadRequest("until: past 9999-12-31T23:59:59Z, which RFC 3339 cannot write")
    return until


# -- signed links --------------------------------------------------------------------------


def _grant(request: web.Request) -> Grant:
    ctx = request.app[CTX]
    return verify(ctx.links.secret, request.match_info["action"], request.query, ctx.clock.now())


def _page(title: str, body: str, status: int = 200) -> web.Response:
    doc = (
        "<!doctype html><html><head><meta charset='utf-8'><meta name='robots' content='noindex'>"
        f"<title>alertd: {html.escape(title)}</title></head>"
        f"<body style='font-family: sans-serif; max-width: 40em; margin: 2em auto'><h2>{html.escape(title)}</h2>"
        f"{body}</body></html>"
    )
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}  # the link is its own password
    return web.Response(text=doc, status=status, content_type="text/html", headers=headers)


REFUSED = "This link is not valid: it was altered, or it has expired. Nothing was changed."


def _what(ctx: ApiContext, grant: Grant) -> str:
    silence_for = ctx.config.acks.link_silence_for / 3600
    if grant.action == ACK:
        return "Acknowledge these alerts: they stop paging until they resolve; a new alert in the group still pages."
    return f"Silence this group for {silence_for:g} h: every alert of it, new ones too, stops paging."


async def link_page(request: web.Request) -> web.Response:
    """What the link would do, and a button that POSTs: a GET changes nothing."""
    ctx = request.app[CTX]
    try:
        grant = _grant(request)
    except LinkRefused:
        return _page("link refused", f"<p>{REFUSED}</p>", 403)
    group = next((g for g in ctx.groups() if g.key == grant.group), None)
    firing = [a for a in group.alerts.values() if a.state is AlertState.FIRING] if group else []
    items = "".join(
        f"<li>{html.escape(a.annotations.get('summary') or a.name)}"
        f" <code>{html.escape(' '.join(f'{k}={v}' for k, v in sorted(a.labels.items())))}</code></li>"
        for a in firing
    )
    body = (
        f"<p>{html.escape(_what(ctx, grant))}</p><p>Group <code>{html.escape(grant.group)}</code></p>"
        f"<ul>{items or '<li>nothing is firing in this group now</li>'}</ul>"
        "<form method='post'><label>Your name (optional) <input name='by' maxlength='100'></label>"
        f"<p><label>Comment (optional) <input name='comment' maxlength='500'></label></p>"
        f"<button type='submit'>{'Acknowledge' if grant.action == ACK else 'Silence'}</button></form>"
    )
    return _page("acknowledge" if grant.action == ACK else "silence", body)


async def link_act(request: web.Request) -> web.Response:
    """The link's one action, for its one group."""
    ctx = request.app[CTX]
    try:
        grant = _grant(request)
    except LinkRefused:
        return _page("link refused", f"<p>{REFUSED}</p>", 403)
    form = await request.post()
    name = str(form.get("by") or "").strip()[:100]
    comment = str(form.get("comment") or "").strip()[:500]
    by = f"{name} (link)" if name else "notification link"
    group = next((g for g in ctx.groups() if g.key == grant.group), None)
    if group is None:
        return _page("nothing to do", "<p>This group has no alerts any more. Nothing was changed.</p>", 409)
    if grant.action == ACK:
        firing = [a for a in group.alerts.values() if a.state is AlertState.FIRING]
        try:
            ack = await ctx.acks.ack(firing, group=group.key, group_labels=group.labels, by=by, comment=comment)
        except AckError as e:
            return _page("nothing to do", f"<p>{html.escape(str(e))}. Nothing was changed.</p>", 409)
        n = len(ack.fingerprints)
        return _page("acknowledged", f"<p>{n} alert(s) acknowledged by {html.escape(by)} (ack {ack.id}).</p>")
    now = ctx.clock.now()
    sid = await ctx.silences.upsert(
        [Matcher.create(k, "=", v) for k, v in sorted(group.labels.items())],
        now,
        now + ctx.config.acks.link_silence_for,
        created_by=by,
        comment=comment or "silenced from a notification link",
        author=by,
    )
    until = rfc3339(now + ctx.config.acks.link_silence_for)
    return _page("silenced", f"<p>Group silenced until {until} (silence {sid}).</p>")
