"""The console's read-only endpoints: overview, tasks, workers, queues and alert values over time.

Counters and distributions come from the series store (alertd.observe.series), whose retention
(observe.retention, an hour by default) bounds every chart. Gauges are not kept there, so a
background task samples them into a Recorder (alertd.observe.recorder) every `3 x observe.bucket`
(15 s by default) for as long as the retention. Every endpoint needs only the read role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from alertd.alert import AlertState
from alertd.api.console_state import (
    CONSOLE,
    DETAIL_POINTS,
    OVERVIEW,
    PREFIX,
    QUEUE_GAUGES,
    TASK_WINDOWS,
    UNITS,
    WORKER_GAUGES,
    Console,
    _num,
)
from alertd.api.context import ApiContext
from alertd.api.http import CTX, needs
from alertd.api.wire import BadRequest
from alertd.auth import Role
from alertd.catalogue import CATALOGUE
from alertd.observe.recorder import Recorder
from alertd.observe.series import Labels

log = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/overview", overview)
    r.add_get(f"{PREFIX}/tasks", tasks)
    r.add_get(f"{PREFIX}/task", task_detail)
    r.add_get(f"{PREFIX}/workers", workers)
    r.add_get(f"{PREFIX}/queues", queues)
    r.add_get(f"{PREFIX}/alert-values", alert_values)
    app[CONSOLE] = Console(app[CTX])
    app.cleanup_ctx.append(_lifecycle)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    console.open()
    task = asyncio.create_task(console.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    console.close()


def _series(rec: Recorder, name: str, labels: tuple[str, ...] = ()) -> list[float | None]:
    # four significant digits are more than a chart shows, and halve the response
    return [None if v is None else float(f"{v:.4g}") for v in rec.series(name, labels)]


def _json(doc: Any) -> web.Response:
    """JSON, gzipped for clients that take it: a 1,000-name task table is ~400 KB, ~45 KB gzipped."""
    response = web.json_response(doc)
    if len(response.body or b"") > 8192:  # type: ignore[arg-type]
        response.enable_compression()
    return response


@needs(Role.READ)
async def overview(request: web.Request) -> web.Response:
    """The deployment at a glance: each figure now and sampled over the retention."""
    console = request.app[CONSOLE]
    rec = console.recorder
    if rec.samples == 0:
        console.sample()  # a page opened right after start shows figures, not blanks
    tiles = {
        name: {"value": rec.latest(name), "unit": UNITS.get(name, ""), "series": _series(rec, name)}
        for name in OVERVIEW
    }
    return _json(
        {
            "step": console.step,
            "retention": console.retention,
            "times": rec.times(),
            "tiles": tiles,
            "units": {name: m.unit for name, m in CATALOGUE.items()},
            "rule_units": _rule_units(request.app[CTX]),
        }
    )


def _rule_units(ctx: ApiContext) -> dict[str, str]:
    """Each metric rule's value unit by group/name: its metric's, but a count is a count."""
    out = {}
    for rt in ctx.engine.runtimes.values():
        r = rt.rule
        metric = CATALOGUE.get(r.spec.metric or "")
        if metric is not None:
            out[f"{r.group}/{r.name}"] = "" if r.spec.stat == "count" else metric.unit
    return out


def _window(request: web.Request, name: str, default: float, console: Console) -> float:
    raw = request.query.get(name)
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        raise BadRequest(f"{name}: expected seconds, e.g. 900") from None
    if not math.isfinite(value) or value <= 0:
        raise BadRequest(f"{name}: expected seconds above 0")
    return min(value, console.retention)


@needs(Role.READ)
async def tasks(request: web.Request) -> web.Response:
    """One row per task name and queue over a window: rate, failure and retry ratios, runtimes, waits."""
    console = request.app[CONSOLE]
    asked = _window(request, "window", 900.0, console)
    # one of a few windows, so that the views kept for them stay few
    window = min(min(TASK_WINDOWS, key=lambda w: abs(w - asked)), console.retention)
    ok = console.counter("tasks_succeeded", window)
    failed = console.counter("tasks_failed", window)
    retried = console.counter("tasks_retried", window)
    sent = console.counter("tasks_sent", window)
    runtime = console.dist_stats("task_runtime_seconds", window, (0.5, 0.95))
    wait = console.dist_stat("task_queue_wait_seconds", window, 0.95)
    flying = request.app[CTX].observer.in_flight()
    rows = []
    for key in sorted(ok.keys() | failed.keys() | retried.keys() | sent.keys() | flying.keys() | runtime.keys()):
        task, queue = key
        s, f, r = ok.get(key, 0.0), failed.get(key, 0.0), retried.get(key, 0.0)
        recent = console.failures.get(task)
        last = next((x for x in reversed(recent) if x["queue"] in (queue, "")), None) if recent else None
        rt = runtime.get(key)
        rows.append(
            {
                "task": task,
                "queue": queue,
                "rate": (s + f) / window,
                "succeeded": s,
                "failed": f,
                "retried": r,
                "sent": sent.get(key, 0.0),
                "failure_ratio": f / (s + f) if s + f else None,
                "retry_ratio": r / (s + f + r) if s + f + r else None,
                "runtime_p50": _num(rt[0]) if rt else None,
                "runtime_p95": _num(rt[1]) if rt else None,
                "wait_p95": _num(wait.get(key)),
                "in_flight": flying.get(key, 0),
                "last_failure": {k: last[k] for k in ("at", "exception", "worker")} if last else None,
            }
        )
    return _json({"window": window, "retention": console.retention, "tasks": rows})


@needs(Role.READ)
async def task_detail(request: web.Request) -> web.Response:
    """One task's charts over `range` seconds (at most the retention), recent failures, its alerts."""
    console = request.app[CONSOLE]
    ctx = request.app[CTX]
    name = request.query.get("task")
    if not name:
        raise BadRequest("task: give the task name, e.g. ?task=proj.tasks.charge")
    span = _window(request, "range", 3600.0, console)
    bucket = ctx.config.observe.bucket
    step = max(bucket, math.ceil(span / DETAIL_POINTS / bucket) * bucket)
    count = max(1, math.ceil(span / step))
    now = ctx.clock.now()
    series = ctx.series

    def mine(labels: Labels) -> tuple[()] | None:
        return () if labels[0] == name else None

    ok = series.counter_steps("tasks_succeeded", now, step, count, mine)
    failed = series.counter_steps("tasks_failed", now, step, count, mine)
    retried = series.counter_steps("tasks_retried", now, step, count, mine)
    runtime = series.distribution_steps("task_runtime_seconds", now, step, count, mine)
    wait = series.distribution_steps("task_queue_wait_seconds", now, step, count, mine)

    def q(parts: list[Any], quantile: float) -> list[float | None]:
        return [_num(p[()].quantile(quantile)) if () in p and p[()].count else None for p in parts]

    end = (int(now // bucket) + 1) * bucket
    alerts = [
        {"labels": a.labels, "state": a.state.value, "value": _num(a.value), "fingerprint": a.fingerprint}
        for a in ctx.alerts()
        if a.labels.get("task") == name and a.state is not AlertState.RESOLVED
    ]
    return _json(
        {
            "task": name,
            "range": span,
            "step": step,
            "retention": console.retention,
            "times": [end - (count - i) * step for i in range(count)],
            "rate": [(o.get((), 0.0) + f.get((), 0.0)) / step for o, f in zip(ok, failed, strict=True)],
            "failure_ratio": [
                f.get((), 0.0) / (o.get((), 0.0) + f.get((), 0.0)) if o.get((), 0.0) + f.get((), 0.0) else None
                for o, f in zip(ok, failed, strict=True)
            ],
            "retried": [r.get((), 0.0) for r in retried],
            "runtime_p50": q(runtime, 0.5),
            "runtime_p95": q(runtime, 0.95),
            "wait_p95": q(wait, 0.95),
            "failures": list(reversed(console.failures.get(name, ()))),
            "alerts": alerts,
        }
    )


@needs(Role.READ)
async def workers(request: web.Request) -> web.Response:
    """Every worker with its state and gauges, their samples over the retention, orphaned tasks."""
    console = request.app[CONSOLE]
    ctx = request.app[CTX]
    rec = console.recorder
    orphaned: dict[str, float] = {}
    now = ctx.clock.now()
    for labels, n in ctx.series.sums("tasks_orphaned", console.retention, now).items():
        orphaned[labels[2]] = orphaned.get(labels[2], 0.0) + n
    rows = []
    for w in ctx.workers():
        host = w["hostname"]
        rows.append(
            {
                **{k: _num(v) if isinstance(v, float) else v for k, v in w.items()},
                # on alertd's clock: the browser's may be off
                "heartbeat_age": now - w["last_heartbeat"] if isinstance(w.get("last_heartbeat"), float) else None,
                "orphaned": orphaned.get(host, 0.0),
                "series": {name: _series(rec, name, (host,)) for name in WORKER_GAUGES},
            }
        )
    return _json({"times": rec.times(), "step": console.step, "workers": rows})


@needs(Role.READ)
async def queues(request: web.Request) -> web.Response:
    """Every sampled queue: length, consumers, waits now and over the retention, tasks routed there."""
    console = request.app[CONSOLE]
    ctx = request.app[CTX]
    rec = console.recorder
    routed: dict[str, set[str]] = {}
    now = ctx.clock.now()
    for metric in ("tasks_sent", "tasks_received"):
        for labels in ctx.series.sums(metric, console.retention, now):
            if labels[1]:
                routed.setdefault(labels[1], set()).add(labels[0])
    names = {labels[0] for labels in rec.labels_of("queue_length")} | set(ctx.observer.queues) | set(routed)
    rows = []
    for q in sorted(names):
        rows.append(
            {
                "queue": q,
                **{name: _num(rec.latest(name, (q,))) for name in QUEUE_GAUGES},
                "tasks": sorted(routed.get(q, ())),
                "series": {name: _series(rec, name, (q,)) for name in QUEUE_GAUGES},
            }
        )
    return _json({"times": rec.times(), "step": console.step, "queues": rows})


@needs(Role.READ)
async def alert_values(request: web.Request) -> web.Response:
    """Each current metric alert's rule value over the retention, with the rule's threshold."""
    console = request.app[CONSOLE]
    ctx = request.app[CTX]
    rules = {
        f"{rt.rule.file}:{rt.rule.line} {rt.rule.group}/{rt.rule.name}": rt.rule for rt in ctx.engine.runtimes.values()
    }
    out = {}
    for a in ctx.alerts():
        rule = rules.get(a.generator)
        if a.state is AlertState.RESOLVED or rule is None or not rule.spec.metric:
            continue
        spec = rule.spec
        metric = CATALOGUE.get(spec.metric or "")
        out[a.fingerprint] = {
            "metric": spec.metric,
            "stat": spec.stat,
            "unit": metric.unit if metric else "",
            "above": spec.above,
            "below": spec.below,
            "value": _num(a.value),
            "values": _series(console.recorder, "alert_value", (a.fingerprint,)),
        }
    return _json({"times": console.recorder.times(), "alerts": out})
