"""Inhibition, as in Alertmanager: a firing source alert mutes matching target alerts.

A rule mutes a target when a firing alert matches source_matchers, the target matches
target_matchers, and both carry the same values for every `equal` label (a missing label equals
an empty one). An alert never inhibits itself, and alerts that match both sides of a rule never
inhibit each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alertd.alert import Alert, AlertState
from alertd.config import InhibitRuleConfig
from alertd.matchers import Matcher, matches_all, parse_matcher

# One page per cause, out of the box: each rule mutes what its source explains, for the default
# rule pack's alert names. They form a strict order - broker unreachable > event stream
# disconnected > no workers online > event stream silent > worker lost > queue without
# consumers > the other per-worker and per-queue alerts - so
# no two alerts can ever mute each other and the cause is always paged (tests check the order).
# `builtin_inhibit_rules: false` in alertd.yaml turns them off, to replace them with your own.
_EVENT_DERIVED = (
    "CeleryTask(FailureRateHigh|RetryRateHigh|RetryStorm|LatencyHigh|RejectedSpike|RevokedSpike"
    "|StuckStarted|StuckReserved|RuntimeHigh)|CeleryHeavyTaskLatencyHigh|CeleryWorkerLostTask"
)
BUILTIN_INHIBIT_RULES: tuple[InhibitRuleConfig, ...] = (
    # Everything alertd measures goes through the broker: its queues, workers and event stream.
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryBrokerUnreachable"'],
        target_matchers=[
            f'alertname=~"CeleryQueue.+|CeleryWorker.+|CeleryNoWorkersOnline|CeleryEventStream.+|{_EVENT_DERIVED}"'
        ],
    ),
    # alertd is blind: what it would judge from events (heartbeats, task rates) is unknown, not bad.
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryEventStreamDisconnected"'],
        target_matchers=[
            f'alertname=~"CeleryEventStreamSilent|CeleryWorkerLost|CeleryWorkerShutDown|CeleryNoWorkersOnline'
            f'|{_EVENT_DERIVED}"'
        ],
    ),
    # No worker at all: per-worker and per-queue consumer alerts, and the silence, follow from it.
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryNoWorkersOnline"'],
        target_matchers=[
            'alertname=~"CeleryEventStreamSilent|CeleryWorker.+|CeleryQueueNoConsumers|CeleryQueueNotDraining"'
        ],
    ),
    # Connected but nothing arrives: heartbeat and task-rate judgements have no data behind them.
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryEventStreamSilent"'],
        target_matchers=[f'alertname=~"CeleryWorkerLost|CeleryWorkerShutDown|{_EVENT_DERIVED}"'],
    ),
    # A lost worker's page already says its queues lost their consumer: CeleryQueueNoConsumers
    # names the gone worker that served the queue (label `worker`, empty when none did).
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryWorkerLost"'],
        target_matchers=['alertname="CeleryQueueNoConsumers"'],
        equal=["worker"],
    ),
    # A queue nobody consumes is the page; what follows from it on that queue - its tasks wait,
    # it grows, it does not drain - and the shutdown of the worker that served it are not.
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryQueueNoConsumers"'],
        target_matchers=[
            'alertname=~"CeleryTaskLatencyHigh|CeleryHeavyTaskLatencyHigh|CeleryQueueLong|CeleryQueueVeryLong'
            '|CeleryQueueNotDraining"'
        ],
        equal=["queue"],
    ),
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryQueueNoConsumers"'],
        target_matchers=['alertname="CeleryWorkerShutDown"'],
        equal=["worker"],
    ),
    # The critical threshold of a queue pages instead of, not beside, its warning.
    InhibitRuleConfig(
        source_matchers=['alertname="CeleryQueueVeryLong"'],
        target_matchers=['alertname="CeleryQueueLong"'],
        equal=["queue"],
    ),
)


def effective_rules(configured: Iterable[InhibitRuleConfig], *, builtin: bool) -> list[InhibitRuleConfig]:
    """The rules in force: the built-in ones (unless turned off), then the configured ones."""
    return [*(BUILTIN_INHIBIT_RULES if builtin else ()), *configured]


@dataclass(frozen=True)
class InhibitRule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: InhibitRuleConfig) -> InhibitRule:
        return cls(
            tuple(parse_matcher(m) for m in cfg.source_matchers),
            tuple(parse_matcher(m) for m in cfg.target_matchers),
            tuple(cfg.equal),
        )


class Inhibitor:
    def __init__(self, rules: Iterable[InhibitRuleConfig]) -> None:
        self.rules = [InhibitRule.from_config(r) for r in rules]
        self._sources: list[tuple[InhibitRule, list[Alert]]] = []

    def update(self, alerts: Iterable[Alert]) -> None:
        """The current alerts; firing ones that match a source are remembered per rule."""
        firing = [a for a in alerts if a.state is AlertState.FIRING]
        self._sources = [(r, [a for a in firing if matches_all(r.source, a.labels)]) for r in self.rules]

    def inhibited_by(self, alert: Alert) -> list[str]:
        """Fingerprints of the firing alerts that inhibit `alert` ([] when none)."""
        out: list[str] = []
        for rule, sources in self._sources:
            if not sources or not matches_all(rule.target, alert.labels):
                continue
            # As Alertmanager: when the target could be a source too, sources that could be
            # targets don't count, so two such alerts never mute each other (or themselves).
            two_sided = matches_all(rule.source, alert.labels)
            for src in sources:
                if src.fingerprint == alert.fingerprint or (two_sided and matches_all(rule.target, src.labels)):
                    continue
                if all(src.labels.get(k, "") == alert.labels.get(k, "") for k in rule.equal):
                    out.append(src.fingerprint)
        return sorted(set(out))
