"""The notifier: alerts in, routed and grouped notifications out.

Alertmanager's shape. The dispatcher (alertd.dispatch) puts alerts into aggregation groups by
route and group labels and flushes each on its timers; a flush runs the pipeline of stages, one
module each:

    inhibit -> time intervals -> silences -> note suppressed -> escalate -> dedup -> claim (HA) -> dedup -> send

(escalate runs dedup -> claim -> dedup -> send for each escalation step's receiver that is owed.)

Every suppression, send, retry, failure and dead letter is written to history. Before sending,
a replica claims the group in the store, so two replicas sharing a Redis store page once. This
class wires the stages from the configuration, owns the lifecycle, and answers the API's views.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alertd.alert import Alert, AlertState
from alertd.clock import Clock
from alertd.config import CONSOLE_RECEIVER, Config, ReceiverConfig, default_route
from alertd.dispatch.dispatcher import Dispatcher
from alertd.dispatch.groups import AlertGroup, current_alerts, group_key
from alertd.dispatch.route import build_route
from alertd.inhibit import Inhibitor, effective_rules
from alertd.nflog import NotificationLog
from alertd.notify import stage
from alertd.notify.claim import Claims, ClaimStage
from alertd.notify.dedup import DedupStage
from alertd.notify.delivery import DeliveryResult, Receiver, ReceiverError, deliver, resolve_receiver
from alertd.notify.escalate import EscalateStage
from alertd.notify.history import History
from alertd.notify.mute import InhibitStage, Muter, NoteSuppressed, SilenceStage, TimeMuteStage, route_muted
from alertd.notify.render import Links, Renderer, no_links
from alertd.notify.send import SendCounts, SendStage
from alertd.notify.template import Templates
from alertd.store.base import Store
from alertd.timeinterval import TimeIntervals

__all__ = ["AlertGroup", "AlertStatus", "Muter", "Notifier"]

log = logging.getLogger(__name__)


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


class Notifier:
    def __init__(self, config: Config, store: Store, clock: Clock, *, silences: Muter | None = None, replica: str = ""):
        self.store = store
        self.clock = clock
        self.silences = silences
        self.links: Links = no_links  # each notification's ack and silence links: the daemon sets alertd.ack.links
        self.replica = replica or "alertd"
        self.nflog = NotificationLog(store)
        self.history = History(store, clock)
        self.counts = SendCounts()
        self.claims = Claims(store, clock, self.replica, lambda: self.config.ha.claim_ttl)
        self._loop_task: asyncio.Task[None] | None = None
        self.dispatcher = Dispatcher(
            build_route(default_route()),
            clock,
            self._flush,
            resolve_at_once=self._resolve_at_once,
            start_delay=config.dispatch_start_delay,
        )
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
        self.renderer = Renderer(templates, lambda: self.config.api.external_url, lambda g, now: self.links(g, now))
        # Built anew on reload; a flush in flight finishes with the stages it started with.
        self.pipeline: list[stage.Stage] = [
            InhibitStage(inhibitor),
            TimeMuteStage(intervals),
            SilenceStage(self.silences),
            NoteSuppressed(self.history),
            EscalateStage(
                store=self.store,
                nflog=self.nflog,
                history=self.history,
                receivers=self.receivers.get,
                # a step's receiver leaves the group's resolved alerts to the route's receiver
                deliver=lambda before_send: delivery(self, lambda group, resolved: None, before_send),
            ),
            *delivery(self, self.dispatcher.forget_resolved),
        ]
        self.dispatcher.rebind(root)

    def receiver_names(self) -> list[str]:
        return sorted(self.receivers)

    def _resolve_at_once(self, receiver: str) -> bool:
        r = self.receivers.get(receiver)
        return r is not None and r.config.send_resolved_immediately

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Flush groups on their own timers. The daemon does not: it flushes after each
        evaluation tick (alertd.daemon.Daemon.tick), so inhibition sources are known first."""
        self._loop_task = asyncio.create_task(self.dispatcher.run(), name="notifier")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        # give sends in flight a moment; a page half-sent at shutdown is retried after restart
        await self.dispatcher.drain(timeout=5.0)
        await self.claims.release_all()

    # -- dispatch --------------------------------------------------------------------------

    def put(self, alerts: Iterable[Alert]) -> None:
        """All current alerts (firing and recently resolved; pending ones are ignored). Idempotent."""
        current = current_alerts(alerts)
        self.inhibitor.update(current.values())
        self.dispatcher.put(current)

    async def settle(self) -> None:
        """Wait for the flushes in flight (the daemon's tick starts them without waiting)."""
        await self.dispatcher.settle()

    def owes_resolved(self, fingerprint: str, ends_at: float | None) -> bool:
        """Whether a resolved episode may still need a notice: the engine keeps it while so."""
        return self.dispatcher.owes_resolved(fingerprint, ends_at)

    async def flush_due(self, *, wait: bool = True) -> None:
        """Flush every group whose timer is due (tests call this after moving a virtual clock)."""
        await self.dispatcher.flush_due(wait=wait)

    async def _flush(self, group: AlertGroup, timer: bool = True) -> None:
        receiver = self.receivers.get(group.receiver)
        if receiver is None:
            log.error("route %s names unknown receiver %r", group.route.id, group.receiver)
            return
        await stage.run(self.pipeline, stage.Flush.of(group, receiver, self.clock.now(), timer=timer))

    # The dispatcher's state, as the API, the daemon and tests read it.
    @property
    def groups_by_key(self) -> dict[str, AlertGroup]:
        return self.dispatcher.groups_by_key

    @property
    def alerts_by_fp(self) -> dict[str, Alert]:
        return self.dispatcher.alerts_by_fp

    @property
    def _inflight(self) -> dict[str, asyncio.Task[None]]:
        return self.dispatcher._inflight

    @property
    def dispatch_from(self) -> float:
        return self.dispatcher.dispatch_from

    @property
    def sent_total(self) -> int:
        return self.counts.sent

    @property
    def failed_total(self) -> int:
        return self.counts.failed

    @property
    def fallback_total(self) -> int:
        return self.counts.fallback

    @property
    def possible_duplicates_total(self) -> int:
        return self.counts.possible_duplicates

    # -- views for the API -----------------------------------------------------------------

    def groups(self) -> list[AlertGroup]:
        return list(self.groups_by_key.values())

    def alert_status(self, alert: Alert, now: float) -> AlertStatus:
        routes = self.root.match(alert.labels)
        silenced = self.silences.mutes(alert.labels, now) if self.silences else []
        inhibited = self.inhibitor.inhibited_by(alert) if alert.state is AlertState.FIRING else []
        muted = sorted({m for r in routes for m in route_muted(self.intervals, r, now)})
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
            key = group_key(r, group_labels)
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
                    "muted_by": route_muted(self.intervals, r, now),
                    "escalate": [{"after": s.after, "receiver": s.receiver} for s in r.escalate],
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
            r = Receiver(r.config.model_copy(update={"retries": retries}), r.urls, r.api)
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
        message = self.renderer.render(r, group, [sample], [], "test", now)
        result = await deliver(
            r,
            message.rendered,
            clock=self.clock,
            resolved=False,
            params=message.params,
            body_format=message.body_format,
        )
        await self.history.record(
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


def delivery(
    n: Notifier, forget: Callable[[AlertGroup, list[Alert]], None], *before_send: stage.Stage
) -> list[stage.Stage]:
    """The stages that send a group what it owes one receiver, once (HA claim), and record it:
    the route's receiver's, and each escalation step's (alertd.notify.escalate)."""
    dedup = DedupStage(n.nflog, n.replica, forget)
    return [
        dedup,  # read before claiming: most flushes have nothing to say
        ClaimStage(n.claims),
        dedup,  # the other replica may have sent just before this one got the claim
        *before_send,
        SendStage(
            nflog=n.nflog,
            history=n.history,
            renderer=n.renderer,
            clock=n.clock,
            replica=n.replica,
            counts=n.counts,
            receivers=n.receivers.get,
            forget=forget,
        ),
    ]
