"""What the API, the CLI and the page list of the periodic entries: each with its schedule in
words, next expected run, last run, checks and state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from alertd.periodic.runs import RUNNING, WAITING, Run

if TYPE_CHECKING:
    from alertd.periodic.checks import EntryState, Periodic


def snapshot(periodic: Periodic, now: float) -> dict[str, Any]:
    """Every entry with its schedule in words, next expected run, last run and state (API, CLI)."""
    periodic._sweep_lost()
    out = []
    for st in periodic.entries.values():
        c = periodic._checks(st, now)
        last = st.last()
        if c is None:  # listed, its problem under `problems`
            view = {**st.entry.as_dict(), "queue": st.queue, "next_expected": None, "state": "error"}
            run = _run_view(last, now) if last else None
            out.append({**view, "last_run": run, "checks": {}, "seen_from": None})
            continue
        out.append(
            {
                **st.entry.as_dict(),
                "queue": st.queue,
                "next_expected": st.next_expected() if st.entry.enabled else None,
                "last_run": _run_view(last, now) if last else None,
                "state": _state(st, c) if st.entry.enabled else "disabled",
                "checks": c,
                "seen_from": ("task-sent" if st.sent_seen else "task-received" if st.received_only else None),
            }
        )
    sent = [st.sent_seen for st in periodic.entries.values() if st.runs]
    return {
        "source": periodic.source,
        "loaded_at": periodic.loaded_at,
        "problems": list(periodic.problems),
        # False: runs are seen only from task-received, so beat does not send task-sent
        # events; sends are then timed by the worker's receipt and a queued run looks missed
        "task_sent_events": (any(sent) if sent else None),
        "entries": out,
    }


def _state(st: EntryState, c: Mapping[str, Any]) -> str:
    if c["never_finished"]:
        return "never_finished"
    if c["failed"]:
        return "failed"
    if c["overran"]:
        return "overran"
    if c["missed_seconds"] > 0:
        return "overdue"
    last = st.last()
    if last is None:
        return "waiting"
    if last.state in RUNNING:
        return "running"
    if last.state in WAITING:
        return "queued"
    return "ok"


def _run_view(run: Run, now: float) -> dict[str, Any]:
    return {**run.as_dict(), "runtime": run.runtime(now), "outcome": run.state}
