"""GET /api/alertd/v1/periodic: every entry of the beat schedule, its next expected run, last run and state."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from alertd.api.http import CTX, needs
from alertd.api.wire import rfc3339
from alertd.auth import Role

PATH = "/api/alertd/v1/periodic"
TIMES = ("sent_at", "received_at", "started_at", "finished_at", "due_at", "next_due")
NO_SENT_EVENTS = (
    "runs are seen only from task-received: beat does not send task-sent events (set "
    "task_send_sent_event = True in the app beat runs), so sends are timed by the worker's receipt "
    "and a run waiting in the queue looks missed"
)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, periodic)


@needs(Role.READ)
async def periodic(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    checks = getattr(ctx, "periodic", None)  # a context without periodic checks lists nothing
    now = ctx.clock.now()
    snap: dict[str, Any] = (
        checks.snapshot(now)
        if checks is not None
        else {"source": "", "loaded_at": None, "problems": [], "task_sent_events": None, "entries": []}
    )
    return web.json_response(view(snap))


def view(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot with times as RFC 3339 and the warnings an operator must act on."""
    warnings = [NO_SENT_EVENTS] if snap["task_sent_events"] is False else []
    return {
        "source": snap["source"],
        "loaded_at": _time(snap["loaded_at"]),
        "problems": snap["problems"],
        "task_sent_events": snap["task_sent_events"],
        "warnings": warnings,
        "entries": [_entry(e) for e in snap["entries"]],
    }


def _entry(e: dict[str, Any]) -> dict[str, Any]:
    last = e["last_run"]
    if last is not None:
        last = {k: (_time(v) if k in TIMES else v) for k, v in last.items()}
        last["runtime"] = _number(last.get("runtime"))
    checks = {k: _number(v) if isinstance(v, float) else v for k, v in e["checks"].items()}
    return {**e, "next_expected": _time(e["next_expected"]), "last_run": last, "checks": checks}


def _time(t: float | None) -> str | None:
    return rfc3339(t) if t is not None and math.isfinite(t) else None


def _number(v: Any) -> Any:
    return v if not isinstance(v, float) or math.isfinite(v) else None
