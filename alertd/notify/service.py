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
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from alertd.alert import Alert, AlertState
from alertd.clock import Clock
from alertd.config import Config
from alertd.dispatch.route import Route, build_route
from alertd.faults import crash_point
from alertd.inhibit import Inhibitor, effective_rules
from alertd.nflog import Entry, NotificationLog, dedup_reason
from alertd.notify.config import CONSOLE_RECEIVER, ReceiverConfig, default_route
from alertd.notify.delivery import DeliveryResult, Receiver, ReceiverError, deliver, resolve_receiver
from alertd.notify.template import Rendered, Templates, build_context
from alertd.store.base import HistoryEntry, Store
from alertd.timeinterval import TimeIntervals

log = logging.getLogger(__name__)

CLAIM_RECHECK_SECONDS = 5.0  # a group whose send another replica holds is looked at again this soon
CATCH_UP = "catch-up after fallback"
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
class _Plan:
    """What a flush owes the receiver: decided from the notification log."""

    entry: Entry | None
    to_fire: list[Alert]
    shown_resolved: list[Alert]  # resolved alerts the message lists (none when send_resolved is off)
    reason: str
    episodes: dict[str, float]  # firing fingerprint -> starts_at of its episode
    owed_resolved: list[Alert]  # resolved alerts the receiver was (or may have been) told as firing
    # told as firing earlier and still firing, but silenced or inhibited now: left out of the
    # message, kept in the log, so that their resolved notice is still owed when they end
    still_told: dict[str, float] = field(default_factory=dict)
    resolved_starts: dict[str, float] = field(default_factory=dict)  # episodes told resolved, for the log


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


def current_alerts(alerts: Iterable[Alert]) -> dict[str, Alert]:
    """One alert per fingerprint: the firing episode if there is one, else the latest resolved one.

    The engine keeps a resolved copy for a while after an episode ends (so its resolved notice can
    still be sent); when the same label set fires again, the new episode must not be shadowed by
    that copy, whatever order they come in.
    """
    out: dict[str, Alert] = {}
    for a in alerts:
        if a.state is AlertState.PENDING:
            continue
        seen = out.get(a.fingerprint)
        if seen is None or _outranks(a, seen):
            out[a.fingerprint] = a
    return out


def _outranks(a: Alert, b: Alert) -> bool:
    if (a.state is AlertState.FIRING) != (b.state is AlertState.FIRING):
        return a.state is AlertState.FIRING
    return (a.ends_at or a.starts_at) > (b.ends_at or b.starts_at)


def _resolved_starts(
    entry: Entry | None, group: AlertGroup, episodes: Mapping[str, float], resolving: list[Alert]
) -> dict[str, float]:
    """Episodes told resolved, so that a replica that sees the end later does not page them anew.

    Kept for alerts still in the group (a lagging replica's are); the rest is pruned, which keeps
    the entry as small as the group.
    """
    kept = {
        fp: s
        for fp, s in (entry.resolved_starts.items() if entry is not None else ())
        if fp in group.alerts and fp not in episodes
    }
    return kept | {a.fingerprint: a.starts_at for a in resolving}


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
        self._held_resolved: set[str] = set()  # resolved alerts some group has yet to flush
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._claims: set[str] = set()  # send claims this notifier holds, handed back on stop
        self.sent_total = 0
        self.failed_total = 0
        self.fallback_total = 0  # delivered by a fallback receiver (also counted in sent_total)
        self.possible_duplicates_total = 0  # re-sent after an attempt that may have reached the receiver
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
        inhibitor = Inhibitor(effective_rules(config.inhibit_rules, builtin=config.builtin_inhibit_rules))
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
        # A graceful stop hands its claims back, so the other replica (or this one, restarted)
        # sends what is owed at once instead of waiting for the claims to expire.
        for key in list(self._claims):
            await self._release(key)

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
        current = current_alerts(alerts)
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
        held: set[str] = set()
        for group in self.groups_by_key.values():
            # An alert the engine no longer reports (retention passed) leaves its group.
            for fp in [fp for fp in group.alerts if fp not in current]:
                del group.alerts[fp]
            held.update(fp for fp, a in group.alerts.items() if a.state is AlertState.RESOLVED)
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
        self._held_resolved = held

    def owes_resolved(self, fingerprint: str, ends_at: float | None) -> bool:
        """Whether this resolved episode may still need a notice (or a decision that none is owed).

        The engine keeps a resolved alert while this says so: once every group it was routed to
        has flushed it, nothing is lost by forgetting it. Until the notifier has seen it at all,
        or while a group still holds it (a failed send, another replica's claim), it is owed.
        """
        return self._finished.get(fingerprint, -1.0) != ends_at or fingerprint in self._held_resolved

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

        # 4. dedup against the notification log, read before claiming: most flushes have nothing to say
        plan = await self._plan(receiver, group, to_fire, resolved, now)
        if plan is None:
            return

        # 5. HA: one replica at a time sends for a group. The claim is a lock on the group, not on
        # one notification: the replica that waits reads what the other one logged, so a group
        # that grew during group_wait is not paged twice. A replica that dies holding it is
        # recognised when it comes back (its identity is stable); otherwise the claim expires.
        kind = "firing" if plan.to_fire else "resolved"
        claim_key = f"send:{receiver.name}:{group.key}"
        crash_point("before-claim", kind)
        if not await self.store.claim(claim_key, self.replica, self.config.ha.claim_ttl, now):
            recheck = now + min(group.route.group_interval, CLAIM_RECHECK_SECONDS)
            group.next_flush = min(group.next_flush, recheck)
            log.info(
                "group %s: another replica holds the send to %s; checking again in %.0fs",
                group.key,
                receiver.name,
                recheck - now,
            )
            return
        self._claims.add(claim_key)
        crash_point("after-claim", kind)
        renewal = asyncio.create_task(self._renew(claim_key), name=f"claim {claim_key}")
        try:
            # The other replica may have sent just before we got the claim: decide on what it logged.
            plan = await self._plan(receiver, group, to_fire, resolved, now)
            if plan is not None and await self._send(receiver, group, plan, now):
                self._forget_resolved(group, resolved)
        except Exception:
            await self._release(claim_key)  # a bug in this flush must not hold the group
            raise
        finally:
            renewal.cancel()
        # A cancelled send (shutdown) skips this and keeps its claim until stop() hands it back;
        # a crashed one keeps it until it expires or this replica, restarted, takes it again.
        await self._release(claim_key)

    async def _renew(self, claim_key: str) -> None:
        """Keep the claim while the send is alive (retries can outlast claim_ttl); a dead sender's
        claim then expires within claim_ttl, whatever backoff it was in."""
        ttl = self.config.ha.claim_ttl
        while True:
            await self.clock.sleep(ttl / 3)
            try:
                await self.store.claim(claim_key, self.replica, ttl, self.clock.now())
            except Exception as e:
                log.warning("could not renew claim %s: %s", claim_key, e)

    async def _plan(
        self, receiver: Receiver, group: AlertGroup, to_fire: list[Alert], resolved: list[Alert], now: float
    ) -> _Plan | None:
        """What this group owes its receiver now, according to the notification log; None if nothing."""
        entry = await self.nflog.get(receiver.name, group.key)
        cfg = receiver.config
        episodes = {a.fingerprint: a.starts_at for a in to_fire}
        # resolved alerts never told (or tried) as firing need no resolved notice: drop them quietly
        to_resolve = [a for a in resolved if entry is not None and entry.owes_resolve(a.fingerprint)]
        reason = dedup_reason(
            entry,
            episodes,
            {a.fingerprint for a in resolved},
            now=now,
            repeat_interval=group.route.repeat_interval,
            send_resolved=cfg.send_resolved,
            replica=self.replica,
        )
        if reason is None and entry is not None and entry.via and cfg.catch_up_after_fallback and to_fire:
            reason = CATCH_UP  # the fallback told someone; the receiver itself still has to hear it once
        if reason is None:
            resolve_fps = {a.fingerprint for a in to_resolve}
            if entry is not None and not cfg.send_resolved and resolve_fps:
                # Nothing to say (send_resolved: false), but the log must forget the resolved
                # alerts, or one that fires again would look already told and never page.
                await self.nflog.put(
                    replace(
                        entry,
                        firing=[fp for fp in entry.firing if fp not in resolve_fps],
                        resolved=[],
                        starts={fp: s for fp, s in entry.starts.items() if fp not in resolve_fps},
                        maybe_firing={fp: s for fp, s in entry.maybe_firing.items() if fp not in resolve_fps},
                        maybe_resolved=[fp for fp in entry.maybe_resolved if fp not in resolve_fps],
                        resolved_starts=_resolved_starts(entry, group, episodes, to_resolve),
                    )
                )
            self._forget_resolved(group, resolved)
            return None
        if (
            entry is not None
            and entry.firing
            and entry.replica not in ("", self.replica)
            and reason != "repeat elapsed"
        ):
            # Another replica sent last: group_interval runs from its send, not from this replica's
            # own timer, so a group that grew during group_wait is not paged by both (resolved
            # notices may go at once if the receiver asks for that). This replica's own sends are
            # paced by its timers, as in Alertmanager, restarts included.
            due = entry.at + group.route.group_interval
            if now < due and not (cfg.send_resolved_immediately and not to_fire):
                group.next_flush = due
                return None
        muted_firing = {a.fingerprint for a in group.alerts.values() if a.state is AlertState.FIRING} - set(episodes)
        still_told = (
            {fp: entry.starts.get(fp, 0.0) for fp in entry.firing if fp in muted_firing} if entry is not None else {}
        )
        return _Plan(
            entry,
            to_fire,
            to_resolve if cfg.send_resolved else [],
            reason,
            episodes,
            to_resolve,
            still_told,
            _resolved_starts(entry, group, episodes, to_resolve),
        )

    async def _release(self, claim_key: str) -> None:
        self._claims.discard(claim_key)
        try:
            await self.store.release(claim_key, self.replica)
        except Exception as e:  # it expires by itself; a failed release only delays the other replica
            log.warning("could not release claim %s: %s", claim_key, e)

    def _forget_resolved(self, group: AlertGroup, resolved: list[Alert]) -> None:
        """Resolved alerts are done once their notice went out (or none was owed).

        Only those this flush decided on: an alert that resolved while the flush awaited the store
        or the receiver (the tick that resolves it can land while its page is in flight) still owes
        its resolved notice to the next flush.
        """
        for a in resolved:
            current = group.alerts.get(a.fingerprint)
            if current is not None and current.state is AlertState.RESOLVED and current.ends_at == a.ends_at:
                del group.alerts[a.fingerprint]
                self._finished[a.fingerprint] = a.ends_at

    async def _send(self, receiver: Receiver, group: AlertGroup, plan: _Plan, now: float) -> bool:
        """Log the attempt, deliver (retry, fall back), log the outcome.

        The attempt is in the log before the request leaves, so a crash mid-request still owes the
        resolved notice later; the outcome is in the log the moment a delivery succeeds, before
        history, so a crash right after a page does not send it again.
        """
        kind = "firing" if plan.to_fire else "resolved"
        firing, resolved, reason = plan.to_fire, plan.shown_resolved, plan.reason
        before = plan.entry or Entry(receiver.name, group.key)
        shown_resolved = {a.fingerprint for a in plan.shown_resolved}
        # An earlier attempt at this same news was cut short: the receiver may have it already.
        interrupted = before.attempted_at is not None and bool(
            set(plan.episodes) & set(before.maybe_firing) or shown_resolved & set(before.maybe_resolved)
        )
        attempt = replace(
            before,
            maybe_firing={**before.maybe_firing, **plan.episodes},
            maybe_resolved=sorted(set(before.maybe_resolved) | shown_resolved),
            attempted_at=now,
            attempted_by=self.replica,
        )
        await self.nflog.put(attempt)
        resolve_fps = {a.fingerprint for a in plan.owed_resolved}
        done = Entry(
            receiver.name,
            group.key,
            sorted({*plan.episodes, *plan.still_told}),
            sorted(resolve_fps),
            now,
            reason,
            starts={**plan.still_told, **plan.episodes},
            resolved_starts=plan.resolved_starts,
            replica=self.replica,
            maybe_firing={
                fp: s for fp, s in before.maybe_firing.items() if fp not in plan.episodes and fp not in resolve_fps
            },
            maybe_resolved=[fp for fp in before.maybe_resolved if fp not in resolve_fps and fp not in plan.episodes],
        )
        rendered, params, fmt = self._render(receiver, group, firing, resolved, reason, now)
        alertnames = sorted({a.name for a in (*firing, *resolved)})
        fps = sorted(a.fingerprint for a in (*firing, *resolved))
        detail: dict[str, Any] = {"firing": len(firing), "resolved": len(resolved)}
        if interrupted:
            # the receiver may have this already: an attempt was cut short (crash, timeout)
            detail["possible_duplicate"] = {"attempted_at": before.attempted_at, "by": before.attempted_by}

        async def retrying(attempt_no: int, error: str, backoff: float) -> None:
            await self._record(
                "retry",
                receiver.name,
                group.key,
                reason,
                error,
                alertnames,
                fps,
                {"attempt": attempt_no, "next_in": backoff},
            )

        crash_point("before-request", kind)
        result = await deliver(
            receiver,
            rendered,
            clock=self.clock,
            resolved=not firing,
            params=params,
            body_format=fmt,
            on_retry=retrying,
        )
        if result.ok:
            crash_point("after-request", kind)
            await self.nflog.put(done)
            self._count_sent(interrupted)
            await self._record(
                "sent", receiver.name, group.key, reason, "ok", alertnames, fps, {"attempts": result.attempts, **detail}
            )
            return True
        if reason == CATCH_UP:
            # already told through the fallback: no dead letter and no second fallback each interval
            await self._record(
                "failed", receiver.name, group.key, reason, result.error, alertnames, fps, {"attempts": result.attempts}
            )
            return False
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
        if fallback is None or fallback is receiver:
            return False
        fb_rendered, fb_params, fb_fmt = self._render(fallback, group, firing, resolved, reason, now)
        fb = await deliver(
            fallback, fb_rendered, clock=self.clock, resolved=not firing, params=fb_params, body_format=fb_fmt
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
            # told through the fallback: don't page again every interval; the receiver catches up
            await self.nflog.put(replace(done, via=fallback.name))
            self.fallback_total += 1
            self._count_sent(interrupted)
        return fb.ok

    def _count_sent(self, possible_duplicate: bool) -> None:
        self.sent_total += 1
        if possible_duplicate:
            self.possible_duplicates_total += 1

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
