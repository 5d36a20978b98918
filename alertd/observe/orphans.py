"""Orphaned tasks: those a lost, restarted or shut-down worker held, kept aside by uuid.

A worker's loss takes its tasks out of the task table (they would otherwise look stuck for
ever); a redelivery (the same uuid received again, with acks_late or for reserved tasks) brings
one back with its labels, and the loss record counts it. Both happen far less often than task
events: the task table calls `rejoin` only for a uuid found here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alertd.observe.tasks import Task, TaskTable

IN_FLIGHT = ("started", "received")  # the states a worker holds a task in: what its loss takes away


def rejoin(table: TaskTable, uuid: str, task: Task, state: str, final: bool) -> Task:
    """An orphaned task heard of again: redelivered to a worker, or its worker was not gone after all."""
    lost_with = task.worker
    task.state = "pending"
    if not final:
        table.tasks[uuid] = task
        if len(table.tasks) > table.max_tasks:
            table.tasks.popitem(last=False)
            table.stats["tasks_evicted"] += 1
    if state == "received":
        table.stats["tasks_redelivered"] += 1
        if table.on_redelivered is not None:
            table.on_redelivered(lost_with)
    return task


def orphan_tasks(table: TaskTable, worker: str, now: float, keep_pid: int | None = None) -> list[tuple[Task, str]]:
    """Take the tasks `worker` had started or reserved out of the table (those of process
    `keep_pid` stay): each with the state it was in, counted as tasks_orphaned."""
    # One pass over the table (a few ms for 100k): workers are lost, restarted or shut down
    # far less often than tasks run, and an index by worker would cost every task event.
    found = [
        (uuid, t)
        for uuid, t in dict.items(table.tasks)
        if t.worker == worker and t.state in IN_FLIGHT and (keep_pid is None or t.pid != keep_pid)
    ]
    out: list[tuple[Task, str]] = []
    orphans = table.orphans
    for uuid, t in found:
        del table.tasks[uuid]
        out.append((t, t.state))
        t.state = "orphaned"
        orphans[uuid] = t
        if len(orphans) > table.max_orphans:
            orphans.popitem(last=False)
            table.stats["orphans_evicted"] += 1
        table.series.count("tasks_orphaned", (t.name, t.queue, worker), now)
    table.stats["tasks_orphaned"] += len(out)
    return out
