"""The notifier: alerts in, routed and grouped notifications out.

Alertmanager's shape: the dispatcher puts alerts into aggregation groups by route and group
labels; each group is flushed on its timers (group_wait, then group_interval), and a flush runs a
pipeline of small stages:

    inhibit -> time intervals -> silences -> dedup (notification log) -> render -> send/retry -> record

Every suppression, send, retry, failure and dead letter is written to history. Before sending,
a replica claims the notification in the store, so two replicas sharing a Redis store page once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from alertd.alert import Alert, AlertState
from alertd.clock import Clock
from alertd.config import Config
from alertd.dispatch.route import Route, build_route
from alertd.inhibit import Inhibitor
from alertd.nflog import Entry, NotificationLog, dedup_reason
from alertd.notify.config import ReceiverConfig, RouteConfig
from alertd.notify.delivery import DeliveryResult, Receiver, ReceiverError, deliver, resolve_receiver
from alertd.notify.template import Rendered, Templates, build_context
from alertd.store.base import HistoryEntry, Store
from alertd.timeinterval import TimeIntervals

log = logging.getLogger(__name__)

CONSOLE_RECEIVER = "console"
SEVERITY_TO_PAGERDUTY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}


class Muter(Protocol):
    """Silences (and maintenance windows): ids of those muting a label set; [] when none."""

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]: ...


@dataclass
class AlertGroup:
    """An aggregation group: alerts of one route sharing the route's group_by labels."""

    route: Route
    labels: dict[str, str]
    key: str
    alerts: dict[str, Alert] = field(default_factory=dict)
    next_flush: float = 0.0
    last_flush: float | None = None
    # fingerprint -> silenced | inhibited | muted, as last recorded: history notes changes, not every flush
    suppressed: dict[str, str] = field(default_factory=dict)

    @property
    def receiver(self) -> str:
        return self.route.receiver

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver,
            "labels": self.labels,
            "key": self.key,
            "alerts": [a.to_dict() for a in self.alerts.values()],
            "next_flush": self.next_flush,
        }


@dataclass
class AlertStatus:
    receivers: list[str]
    silenced_by: list[str]
    inhibited_by: list[str]
    muted_by: list[str]
    state: str  # active | suppressed | unprocessed

    def to_dict(self) -> dict[str, Any]:
        return {
            "receivers": self.receivers,
            "silenced_by": self.silenced_by,
            "inhibited_by": self.inhibited_by,
            "muted_by": self.muted_by,
            "state": self.state,
        }


def default_route() -> RouteConfig:
    """With no route configured: everything to the console, grouped by alert name, quickly."""
    return RouteConfig(
        receiver=CONSOLE_RECEIVER,
        group_by=["alertname"],
        group_wait=10.0,
        group_interval=60.0,
        repeat_interval=4 * 3600.0,
    )


class Notifier:
    def __init__(self, config: Config, store: Store, clock: Clock, *, silences: Muter | None = None, replica: str = ""):
        self.store = store
        self.clock = clock
        self.silences = silences
        self.replica = replica or "alertd"
        self.nflog = NotificationLog(store)
        self.groups_by_key: dict[str, AlertGroup] = {}
        self.alerts_by_fp: dict[str, Alert] = {}
        self._finished: dict[str, float | None] = {}  # resolved alerts already dealt with -> ends_at
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self.sent_total = 0
        self.failed_total = 0
        self.reload(config)

    # -- config ----------------------------------------------------------------------------

    def reload(self, config: Config) -> None:
        """New routes and receivers; groups whose route still exists keep their alerts and timers.

        Everything is built before anything is replaced: a receiver that fails to load (an unset
        ${VAR}, a URL Apprise refuses) raises and leaves the running notifier as it was.
        """
        configs = list(config.receivers) or [ReceiverConfig(name=CONSOLE_RECEIVER)]
        if not any(r.name == CONSOLE_RECEIVER for r in configs):
            configs.append(ReceiverConfig(name=CONSOLE_RECEIVER))
        receivers = {r.name: resolve_receiver(r, config.base_dir) for r in configs}
        root = build_route(config.route or default_route())
        inhibitor = Inhibitor(config.inhibit_rules)
        intervals = TimeIntervals(config.time_intervals)
        override = config.path(config.templates_dir) if config.templates_dir else None
        templates = Templates(override, config.base_dir)
        for r in configs:
            problem = templates.problem(r.template)
            if problem:
                raise ReceiverError(r.name, problem)
        self.config, self.receivers, self.root, self.inhibitor, self.intervals = (
            config,
            receivers,
            root,
            inhibitor,
            intervals,
        )
        self.templates = templates
        routes = {r.id: r for r in self.root.walk()}
        kept = {}
        for key, g in self.groups_by_key.items():
            if g.route.id in routes:
                g.route = routes[g.route.id]
                kept[key] = g
        self.groups_by_key = kept

    def receiver_names(self) -> list[str]:
        return sorted(self.receivers)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="notifier")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._inflight:
            # give sends in flight a moment; a page half-sent at shutdown is retried after restart
            await asyncio.wait(list(self._inflight.values()), timeout=5.0)
            left = list(self._inflight.values())
            for t in left:
                t.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = self.clock.now()
            due = [g.next_flush for g in self.groups_by_key.values() if g.key not in self._inflight]
            wait = max(0.0, min(due) - now) if due else 3600.0
            self._wake.clear()
            sleeper = asyncio.ensure_future(self.clock.sleep(wait))
            waker = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            waker.cancel()
            await self.flush_due(wait=False)

    # -- dispatch --------------------------------------------------------------------------

    def put(self, alerts: Iterable[Alert]) -> None:
        """All current alerts (firing and recently resolved; pending ones are ignored). Idempotent."""
        now = self.clock.now()
        current = {a.fingerprint: a for a in alerts if a.state is not AlertState.PENDING}
        self.alerts_by_fp = current
        self.inhibitor.update(current.values())
        # forget finished alerts the engine no longer reports; skip those it still does
        self._finished = {fp: end for fp, end in self._finished.items() if fp in current}
        for alert in current.values():
            if alert.state is AlertState.RESOLVED and self._finished.get(alert.fingerprint) == alert.ends_at:
                continue  # its resolution was already handled
            for route in self.root.match(alert.labels):
                labels = route.group_labels(alert.labels)
                key = route.id + "{" + ",".join(f"{k}={v!r}" for k, v in sorted(labels.items())) + "}"
                group = self.groups_by_key.get(key)
                if group is None:
                    # Resolved alerts get a group too: after a restart the notification log may
                    # say a resolved notice is owed; if nothing was ever said, the flush drops them.
                    group = self.groups_by_key[key] = AlertGroup(route, labels, key, next_flush=now + route.group_wait)
                    self._wake.set()
                group.alerts[alert.fingerprint] = alert
        for group in self.groups_by_key.values():
            # An alert the engine no longer reports (retention passed) leaves its group.
            for fp in [fp for fp in group.alerts if fp not in current]:
                del group.alerts[fp]
            receiver = self.receivers.get(group.receiver)
            if (
                receiver is not None
                and receiver.config.send_resolved_immediately
                and group.alerts
                and group.last_flush is not None
                and all(a.state is AlertState.RESOLVED for a in group.alerts.values())
                and group.next_flush > now
            ):
                group.next_flush = now
                self._wake.set()

    async def flush_due(self, *, wait: bool = True) -> None:
        """Flush every group whose timer is due (tests call this after moving a virtual clock)."""
        now = self.clock.now()
        started = []
        for group in list(self.groups_by_key.values()):
            if group.next_flush <= now and group.key not in self._inflight:
                task = asyncio.create_task(self._flush(group))
                self._inflight[group.key] = task
                task.add_done_callback(functools.partial(self._done, group.key))
                started.append(task)
        if wait and started:
            await asyncio.gather(*started, return_exceptions=True)

    def _done(self, key: str, _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        self._wake.set()  # the run loop skipped this group while it was in flight: reschedule it

    # -- the pipeline ----------------------------------------------------------------------

    async def _flush(self, group: AlertGroup) -> None:
        now = self.clock.now()
        group.last_flush = now
        group.next_flush = now + group.route.group_interval
        try:
            await self._pipeline(group, now)
        except Exception:  # a bug in one group's flush must not stop the others
            log.exception("notification for group %s failed", group.key)
        if not group.alerts:
            self.groups_by_key.pop(group.key, None)

    async def _pipeline(self, group: AlertGroup, now: float) -> None:
        receiver = self.receivers.get(group.receiver)
        if receiver is None:
            log.error("route %s names unknown receiver %r", group.route.id, group.receiver)
            return
        alerts = list(group.alerts.values())
        firing = [a for a in alerts if a.state is AlertState.FIRING]
        resolved = [a for a in alerts if a.state is AlertState.RESOLVED]

        # 1. inhibit
        inhibited = {a.fingerprint for a in firing if self.inhibitor.inhibited_by(a)}
        # 2. time intervals: a muted route sends nothing and tells the log nothing
        muted_by = self._muted_by(group.route, now)
        if muted_by:
            await self._note_suppressed(group, {a.fingerprint: "muted" for a in firing}, ", ".join(muted_by))
            return
        # 3. silences
        silenced = {
            a.fingerprint
            for a in firing
            if a.fingerprint not in inhibited and self.silences and self.silences.mutes(a.labels, now)
        }
        to_fire = [a for a in firing if a.fingerprint not in inhibited and a.fingerprint not in silenced]
        await self._note_suppressed(
            group, {fp: "inhibited" for fp in inhibited} | {fp: "silenced" for fp in silenced}, ""
        )

        # 4. dedup against the notification log
        entry = await self.nflog.get(receiver.name, group.key)
        told = set(entry.firing) if entry else set()
        # resolved alerts never told as firing need no resolved notice: drop them quietly
        to_resolve = [a for a in resolved if a.fingerprint in told]
        fire_fps = {a.fingerprint for a in to_fire}
        resolve_fps = {a.fingerprint for a in to_resolve}
        reason = dedup_reason(
            entry,
            fire_fps,
            resolve_fps,
            now=now,
            repeat_interval=group.route.repeat_interval,
            send_resolved=receiver.config.send_resolved,
        )
        if reason is None:
            if entry is not None and not receiver.config.send_resolved and told & resolve_fps:
                # Nothing to say (send_resolved: false), but the log must forget the resolved
                # alerts, or one that fires again would look already told and never page.
                await self.nflog.put(
                    Entry(receiver.name, group.key, sorted(told - resolve_fps), [], entry.at, entry.reason)
                )
            self._forget_resolved(group)
            return

        # HA: one replica sends each notification; the claim expires so a crashed sender's work is redone
        digest = hashlib.blake2b(
            ("|".join(sorted(fire_fps)) + "#" + "|".join(sorted(resolve_fps)) + "#" + reason).encode(), digest_size=8
        ).hexdigest()
        claim_key = f"send:{receiver.name}:{group.key}:{digest}"
        if not await self.store.claim(claim_key, self.replica, self.config.ha.claim_ttl, now):
            log.debug("another replica sends %s", claim_key)
            return

        # 5. render, 6. send (retry, fallback), 7. record
        shown_resolved = to_resolve if receiver.config.send_resolved else []
        entry_if_sent = Entry(receiver.name, group.key, sorted(fire_fps), sorted(resolve_fps), now, reason)
        result = await self._send(receiver, group, to_fire, shown_resolved, reason, now, entry_if_sent)
        if result.ok:
            self._forget_resolved(group)

    def _forget_resolved(self, group: AlertGroup) -> None:
        """Resolved alerts are done once their notice went out (or none was owed)."""
        for fp, a in list(group.alerts.items()):
            if a.state is AlertState.RESOLVED:
                del group.alerts[fp]
                self._finished[fp] = a.ends_at

    async def _send(
        self,
        receiver: Receiver,
        group: AlertGroup,
        firing: list[Alert],
        resolved: list[Alert],
        reason: str,
        now: float,
        entry_if_sent: Entry,
    ) -> DeliveryResult:
        """Deliver, retry, fall back; the notification log is written the moment a delivery
        succeeds, before anything else, so a crash right after a page cannot send it again."""
        rendered, params, fmt = self._render(receiver, group, firing, resolved, reason, now)
        all_resolved = not firing
        alertnames = sorted({a.name for a in (*firing, *resolved)})
        fps = sorted(a.fingerprint for a in (*firing, *resolved))

        async def retrying(attempt: int, error: str, backoff: float) -> None:
            detail = {"attempt": attempt, "next_in": backoff}
            await self._record("retry", receiver.name, group.key, reason, error, alertnames, fps, detail)

        result = await deliver(
            receiver,
            rendered,
            clock=self.clock,
            resolved=all_resolved,
            params=params,
            body_format=fmt,
            on_retry=retrying,
        )
        if result.ok:
            await self.nflog.put(entry_if_sent)
            self.sent_total += 1
            await self._record(
                "sent",
                receiver.name,
                group.key,
                reason,
                "ok",
                alertnames,
                fps,
                {"attempts": result.attempts, "firing": len(firing), "resolved": len(resolved)},
            )
            return result
        self.failed_total += 1
        await self._record(
            "dead_letter",
            receiver.name,
            group.key,
            reason,
            result.error,
            alertnames,
            fps,
            {"attempts": result.attempts, "title": rendered.title, "body": rendered.body[:4000]},
        )
        log.error("notification to %s failed after %d attempts: %s", receiver.name, result.attempts, result.error)
        fallback = self.receivers.get(receiver.config.fallback or "")
        if fallback is not None and fallback is not receiver:
            fb_rendered, fb_params, fb_fmt = self._render(fallback, group, firing, resolved, reason, now)
            fb = await deliver(
                fallback, fb_rendered, clock=self.clock, resolved=all_resolved, params=fb_params, body_format=fb_fmt
            )
            await self._record(
                "fallback",
                fallback.name,
                group.key,
                reason,
                "ok" if fb.ok else fb.error,
                alertnames,
                fps,
                {"for": receiver.name, "attempts": fb.attempts},
            )
            if fb.ok:
                await self.nflog.put(entry_if_sent)  # told through the fallback: don't page again every interval
                return fb
        return result

    def _render(
        self, receiver: Receiver, group: AlertGroup, firing: list[Alert], resolved: list[Alert], reason: str, now: float
    ) -> tuple[Rendered, dict[str, str], str]:
        ctx = build_context(
            receiver=receiver.name,
            group_key=group.key,
            group_labels=group.labels,
            firing=firing,
            resolved=resolved,
            reason=reason,
            external_url=self.config.api.external_url,
            now=now,
        )
        template = receiver.config.template
        try:
            rendered = self.templates.render(template, ctx)
        except Exception as e:
            # A template that fails on this data (checked at load, but data varies) must not
            # swallow the page: send it with the generic template and say so.
            log.error(
                "receiver %s: template %r failed (%s); sending with the generic template", receiver.name, template, e
            )
            rendered = self.templates.render("generic", ctx)
            template = "generic"
        params: dict[str, str] = {}
        fmt = "markdown" if template == "slack" else "text"
        if template == "pagerduty":
            # A dedup key stable per group: the incident PagerDuty opens is the one the resolve closes.
            params["dedup"] = hashlib.sha256(f"{receiver.name}|{group.key}".encode()).hexdigest()[:32]
            params["action"] = "map"  # trigger while firing, resolve when all resolved
            severities = [a.labels.get("severity", "") for a in firing] or ["info"]
            order = ["critical", "error", "warning", "info"]
            worst = min((order.index(SEVERITY_TO_PAGERDUTY.get(s, "warning")) for s in severities), default=3)
            params["severity"] = order[worst]
            for k, v in list(ctx["common_labels"].items())[:10]:
                params[f"+{k}"] = v
        return rendered, params, fmt

    def _muted_by(self, route: Route, now: float) -> list[str]:
        muted = [n for n in route.mute_time_intervals if self.intervals.active(n, now)]
        if route.active_time_intervals and not any(self.intervals.active(n, now) for n in route.active_time_intervals):
            muted.append("outside " + ", ".join(route.active_time_intervals))
        return muted

    async def _note_suppressed(self, group: AlertGroup, now_suppressed: dict[str, str], muted_by: str) -> None:
        """Record alerts that became silenced, inhibited or muted since the last flush (one entry per kind)."""
        changed: dict[str, list[str]] = {}
        for fp, kind in now_suppressed.items():
            if group.suppressed.get(fp) != kind:
                changed.setdefault(kind, []).append(fp)
        group.suppressed = now_suppressed
        for kind, fps in sorted(changed.items()):
            alerts = [group.alerts[fp] for fp in fps]
            if kind == "muted":
                why = f"time intervals: {muted_by}"
                detail: dict[str, Any] = {"time_intervals": muted_by}
            elif kind == "silenced":
                by = sorted(
                    {
                        sid
                        for a in alerts
                        for sid in (self.silences.mutes(a.labels, self.clock.now()) if self.silences else [])
                    }
                )
                why, detail = f"silenced by {', '.join(by)}", {"silenced_by": by}
            else:
                by = sorted({src for a in alerts for src in self.inhibitor.inhibited_by(a)})
                why, detail = f"inhibited by {len(by)} firing alert(s)", {"inhibited_by": by}
            await self._record(
                kind,
                group.receiver,
                group.key,
                why,
                "suppressed",
                sorted({a.name for a in alerts}),
                sorted(fps),
                detail,
            )

    async def _record(
        self,
        kind: str,
        receiver: str,
        group_key: str,
        reason: str,
        outcome: str,
        alertnames: list[str],
        fps: list[str],
        detail: dict[str, Any],
    ) -> None:
        try:
            await self.store.record(
                HistoryEntry(
                    ts=self.clock.now(),
                    kind=kind,
                    receiver=receiver,
                    group_key=group_key,
                    reason=reason,
                    outcome=outcome,
                    alertnames=alertnames,
                    fingerprints=fps,
                    detail=detail,
                )
            )
        except Exception as e:  # history must never stop a page from going out
            log.warning("could not record %s in history: %s", kind, e)

    # -- views for the API -----------------------------------------------------------------

    def groups(self) -> list[AlertGroup]:
        return list(self.groups_by_key.values())

    def alert_status(self, alert: Alert, now: float) -> AlertStatus:
        routes = self.root.match(alert.labels)
        silenced = self.silences.mutes(alert.labels, now) if self.silences else []
        inhibited = self.inhibitor.inhibited_by(alert) if alert.state is AlertState.FIRING else []
        muted = sorted({m for r in routes for m in self._muted_by(r, now)})
        state = "suppressed" if (silenced or inhibited or muted) else "active"
        return AlertStatus(sorted({r.receiver for r in routes}), silenced, inhibited, muted, state)

    def explain(self, labels: Mapping[str, str], now: float) -> dict[str, Any]:
        """Why a label set goes where it goes, and what would stop it."""
        routes = self.root.match(labels)
        alert = Alert(labels=dict(labels))
        out: dict[str, Any] = {
            "routes": [],
            "silenced_by": self.silences.mutes(labels, now) if self.silences else [],
            "inhibited_by": self.inhibitor.inhibited_by(alert),
        }
        for r in routes:
            group_labels = r.group_labels(labels)
            key = r.id + "{" + ",".join(f"{k}={v!r}" for k, v in sorted(group_labels.items())) + "}"
            g = self.groups_by_key.get(key)
            out["routes"].append(
                {
                    "path": [p.describe() for p in self.root.path_to(r)],
                    "receiver": r.receiver,
                    "group_by": list(r.group_by) if r.group_by is not None else ["..."],
                    "group_labels": group_labels,
                    "group_key": key,
                    "group_wait": r.group_wait,
                    "group_interval": r.group_interval,
                    "repeat_interval": r.repeat_interval,
                    "muted_by": self._muted_by(r, now),
                    "next_flush": g.next_flush if g else None,
                }
            )
        return out

    async def last_notification(self, receiver: str, group_key: str) -> dict[str, Any] | None:
        entry = await self.nflog.get(receiver, group_key)
        return entry.to_dict() if entry else None

    async def test_send(self, receiver: str, *, retries: int | None = None) -> list[DeliveryResult]:
        """A sample notification through the real receiver, to try a URL before an incident.

        `retries` overrides the receiver's own (the CLI tries once, so the answer comes quickly).
        """
        r = self.receivers.get(receiver)
        if r is None:
            raise KeyError(receiver)
        if retries is not None:
            r = Receiver(r.config.model_copy(update={"retries": retries}), r.urls)
        now = self.clock.now()
        sample = Alert(
            labels={"alertname": "AlertdTestNotification", "severity": "info", "receiver": receiver},
            annotations={
                "summary": f"Test notification from alertd to {receiver}",
                "description": "If you can read this, the receiver works.",
            },
            starts_at=now,
        )
        group = AlertGroup(self.root, {"alertname": "AlertdTestNotification"}, f"test:{receiver}")
        rendered, params, fmt = self._render(r, group, [sample], [], "test", now)
        result = await deliver(r, rendered, clock=self.clock, resolved=False, params=params, body_format=fmt)
        await self._record(
            "test",
            receiver,
            group.key,
            "test",
            "ok" if result.ok else result.error,
            ["AlertdTestNotification"],
            [],
            {"attempts": result.attempts},
        )
        return [result]
