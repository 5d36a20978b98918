"""Worker events held back until their task-sent arrives, so that a task is labelled once.

The producer publishes task-sent after the task's message, and the event travels apart from it
(on RabbitMQ through the event exchange to our queue), so a worker can receive, start and even
finish the task before that event reaches us. Only task-sent
carries the queue, so without this the first events of such a task were counted under an empty
queue - its queue wait measured from the receipt, its row shown twice (with and without queue),
its failures missing from the queue's rates - and nothing ever corrected them.

Once the stream has carried a task-sent, a task first heard of by its task-received is held
for a short grace (`SENT_GRACE`, on our receive clock); its later events join it. If its
task-sent comes in that time, the task-sent is applied first and the held events after it, in
order, as if they had arrived in order. If not, they are applied as they came. A name whose held
task had no task-sent is remembered as sent without events (a producer with
`task_send_sent_event` off, Celery's default) and its tasks are not held again until one of its
task-sent events is seen: it pays the grace once per name. A worker's loss, restart or shutdown
releases the tasks it received first, so that they are taken from it like the others.
The one race left is the first task of a process that has seen no task-sent yet.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

SENT_GRACE = 2.0  # seconds a task's worker events wait for its task-sent
MAX_HELD = 10_000  # tasks held at once; beyond, the oldest is applied as it came
MAX_EVENTS_HELD = 16  # events of one held task; beyond (custom events in a loop), it is applied as it came

Held = tuple[str, dict[str, Any], float]  # (state, event, our receive time)


class Reorder:
    """Tasks whose worker events arrived before their task-sent, by uuid, oldest first."""

    __slots__ = ("grace", "held", "max_held", "max_names", "ready", "reordered", "sent_seen", "unsent")

    def __init__(self, grace: float = SENT_GRACE, *, max_names: int, max_held: int = MAX_HELD) -> None:
        self.grace = grace
        self.max_held = max_held
        self.max_names = max_names
        # uuid -> (deadline, task name, worker, events in arrival order)
        self.held: OrderedDict[str, tuple[float, str, str, list[Held]]] = OrderedDict()
        self.ready: list[Held] = []  # released events, to be applied now in this order
        # Task names whose last held task had no task-sent: not held again until one is seen.
        self.unsent: OrderedDict[str, None] = OrderedDict()
        self.reordered = 0  # tasks whose task-sent came after their worker's events
        # Nothing is held until the stream has carried a task-sent: where they are off (Celery's
        # default) no task ever waits.
        self.sent_seen = False

    def holds(self, name: str) -> bool:
        """Whether a task of `name` first heard of by its task-received is held."""
        return self.sent_seen and self.grace > 0 and name not in self.unsent

    def hold(self, uuid: str, name: str, worker: str, event: Held) -> None:
        held = self.held
        held[uuid] = (event[2] + self.grace, name, worker, [event])
        if len(held) > self.max_held:
            self.ready.extend(held.popitem(last=False)[1][3])

    def more(self, uuid: str, event: Held) -> None:
        """Another event of a held task: a task-sent releases it (applied first unless it came
        after the grace), any other joins it."""
        if event[0] != "sent":
            events = self.held[uuid][3]
            events.append(event)
            if len(events) >= MAX_EVENTS_HELD:
                del self.held[uuid]
                self.ready.extend(events)
            return
        deadline, _name, _worker, events = self.held.pop(uuid)
        if event[2] < deadline:
            self.reordered += 1
            self.ready.append(event)
            self.ready.extend(events)
        else:
            self.ready.extend(events)
            self.ready.append(event)

    def seen_sent(self, name: str) -> None:
        """A task-sent of `name`: its tasks (and those of every name not known unsent) are held."""
        self.sent_seen = True
        if self.unsent:
            self.unsent.pop(name, None)

    def due(self, now: float) -> None:
        """Release the tasks whose grace ended by `now`, their names remembered as unsent."""
        held, unsent = self.held, self.unsent
        while held:
            uuid, (deadline, name, _worker, events) = next(iter(held.items()))
            if deadline > now:
                return
            del held[uuid]
            self.ready.extend(events)
            if name:
                unsent[name] = None
                unsent.move_to_end(name)
                if len(unsent) > self.max_names:
                    unsent.popitem(last=False)

    def release_worker(self, worker: str) -> None:
        """Release the tasks `worker` received: it is lost, restarted or shut down, and what it
        held must be in the task table to be taken from it (else it would stay in flight)."""
        for uuid in [u for u, h in self.held.items() if h[2] == worker]:
            self.ready.extend(self.held.pop(uuid)[3])


def apply_ready(
    reorder: Reorder,
    on_event: Callable[[str, dict[str, Any], float], object],
    notify: Callable[[str, dict[str, Any], Any], None],
    malformed: Callable[[Exception], None],
    errors: tuple[type[Exception], ...],
) -> None:
    """Apply the released events as if they had just arrived, each with its own receive time
    (`notify` tells event rules); none of them is held again."""
    grace, reorder.grace = reorder.grace, 0.0
    try:
        while reorder.ready:
            ready, reorder.ready = reorder.ready, []
            for state, event, now in ready:
                try:
                    notify(event["type"], event, on_event(state, event, now))
                except errors as e:
                    malformed(e)
    finally:
        reorder.grace = grace
