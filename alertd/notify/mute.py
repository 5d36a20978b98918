"""The three mute stages - inhibition, time intervals, silences - behind one interface.

Each records *why* an alert is muted on the flush (which sources inhibit it, which intervals or
silences), so the history entry and the API read the same answer and nothing is asked twice.
Order matters as in Alertmanager: inhibition, then the route's time intervals (a muted route
sends nothing at all, resolved notices included), then silences.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from alertd.alert import Alert
from alertd.dispatch.route import Route
from alertd.inhibit import Inhibitor
from alertd.notify.history import History
from alertd.notify.stage import Flush, Suppression
from alertd.timeinterval import TimeIntervals


class Muter(Protocol):
    """Silences (and maintenance windows): ids of those muting a label set; [] when none."""

    def mutes(self, labels: Mapping[str, str], now: float) -> list[str]: ...


def route_muted(intervals: TimeIntervals, route: Route, now: float) -> list[str]:
    """The time intervals muting `route` now (mute_time_intervals active, or outside its active ones)."""
    muted = [n for n in route.mute_time_intervals if intervals.active(n, now)]
    if route.active_time_intervals and not any(intervals.active(n, now) for n in route.active_time_intervals):
        muted.append("outside " + ", ".join(route.active_time_intervals))
    return muted


class MuteStage:
    """Marks the firing alerts this stage mutes, with what mutes them; later stages skip them."""

    kind = ""
    override = False  # muting over an earlier stage's reason (a muted route mutes everything)

    def why(self, alert: Alert, flush: Flush) -> list[str]:
        raise NotImplementedError

    def prepare(self, flush: Flush) -> None:
        """Work done once per flush, before `why` is asked per alert."""

    async def __call__(self, flush: Flush) -> Flush | None:
        self.prepare(flush)
        for a in flush.firing:
            if a.fingerprint in flush.suppressed and not self.override:
                continue
            by = self.why(a, flush)
            if by:
                flush.suppressed[a.fingerprint] = Suppression(self.kind, by)
        return flush


class InhibitStage(MuteStage):
    kind = "inhibited"

    def __init__(self, inhibitor: Inhibitor) -> None:
        self.inhibitor = inhibitor

    def why(self, alert: Alert, flush: Flush) -> list[str]:
        return self.inhibitor.inhibited_by(alert)


class TimeMuteStage(MuteStage):
    kind = "muted"
    override = True

    def __init__(self, intervals: TimeIntervals) -> None:
        self.intervals = intervals

    def prepare(self, flush: Flush) -> None:
        flush.route_muted = route_muted(self.intervals, flush.group.route, flush.now)

    def why(self, alert: Alert, flush: Flush) -> list[str]:
        return flush.route_muted


class SilenceStage(MuteStage):
    kind = "silenced"

    def __init__(self, silences: Muter | None) -> None:
        self.silences = silences

    def why(self, alert: Alert, flush: Flush) -> list[str]:
        if flush.route_muted or self.silences is None:
            return []  # a muted route sends nothing: no need to ask
        return self.silences.mutes(alert.labels, flush.now)


class NoteSuppressed:
    """History notes alerts that became silenced, inhibited or muted since the last flush (one
    entry per kind); a route muted by its time intervals then stops the flush."""

    def __init__(self, history: History) -> None:
        self.history = history

    async def __call__(self, flush: Flush) -> Flush | None:
        group = flush.group
        now_suppressed = {fp: s.kind for fp, s in flush.suppressed.items()}
        changed: dict[str, list[str]] = {}
        for fp, kind in now_suppressed.items():
            if group.suppressed.get(fp) != kind:
                changed.setdefault(kind, []).append(fp)
        group.suppressed = now_suppressed
        for kind, fps in sorted(changed.items()):
            alerts = [group.alerts[fp] for fp in fps]
            by = sorted({src for fp in fps for src in flush.suppressed[fp].by})
            detail: dict[str, Any]
            if kind == "muted":
                muted_by = ", ".join(flush.route_muted)
                why, detail = f"time intervals: {muted_by}", {"time_intervals": muted_by}
            elif kind == "silenced":
                why, detail = f"silenced by {', '.join(by)}", {"silenced_by": by}
            else:
                why, detail = f"inhibited by {len(by)} firing alert(s)", {"inhibited_by": by}
            await self.history.record(
                kind,
                group.receiver,
                group.key,
                why,
                "suppressed",
                sorted({a.name for a in alerts}),
                sorted(fps),
                detail,
            )
        return None if flush.route_muted else flush
