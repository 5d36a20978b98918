"""alertd/stepper.py: the one virtual-time stepper under `alertd run --replay` and `alertd test`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from alertd.clock import VirtualClock
from alertd.stepper import Item, Stepper
from tests.waiting import T0

Seen = list[tuple[str, float, Any]]


def stepper(clock: VirtualClock, seen: Seen, **options: Any) -> Stepper:
    async def step() -> None:
        seen.append(("step", clock.now() - T0, None))

    def on_events(batch: list[dict[str, Any]], at: float) -> None:
        seen.append(("events", clock.now() - T0, ([e["n"] for e in batch], at - T0)))

    return Stepper(clock, on_events, step=step, **options)


def hook(clock: VirtualClock, seen: Seen, name: str) -> Item:
    return lambda: seen.append((name, clock.now() - T0, None))


def test_a_replay_delivers_each_line_at_its_time_after_the_step_of_its_second() -> None:
    clock, seen = VirtualClock(start=T0), []
    items: list[tuple[float, Item]] = [
        (T0 + 1, {"n": 0}),
        (T0 + 1, {"n": 1}),  # received together: one batch
        (T0 + 2.5, hook(clock, seen, "sample")),
        (T0 + 2.5, {"n": 2}),
        (T0 + 3, {"n": 3}),
    ]
    asyncio.run(stepper(clock, seen).run(items, tail=2))
    assert seen == [
        ("step", 1, None),
        ("events", 1, ([0, 1], 1)),
        ("step", 2, None),
        ("sample", 2.5, None),
        ("events", 2.5, ([2], 2.5)),
        ("step", 3, None),  # the tick of its second runs before the line, as live
        ("events", 3, ([3], 3)),
        ("step", 4, None),
        ("step", 5, None),
    ]
    assert clock.now() == T0 + 5


def test_a_rule_test_sees_an_item_at_the_first_step_at_or_after_its_time_and_checks_after_it() -> None:
    clock, seen = VirtualClock(start=T0), []
    items: list[tuple[float, Item]] = [
        (T0 + 0.5, {"n": 0}),
        (T0 + 1, {"n": 1}),  # due at the same step: one batch, `at` the last one's time
        (T0 + 2.5, hook(clock, seen, "sample")),
        (T0 + 3, {"n": 2}),
        (T0 + 9, {"n": 3}),  # after `until`: not delivered
    ]
    checks = [(T0 + 3, hook(clock, seen, "check"))]
    run = stepper(clock, seen, start=T0, at_step=True).run(items, until=T0 + 3, checks=checks)
    asyncio.run(run)
    assert seen == [
        ("step", 0, None),
        ("events", 1, ([0, 1], 1)),
        ("step", 1, None),
        ("step", 2, None),
        ("sample", 3, None),
        ("events", 3, ([2], 3)),
        ("step", 3, None),
        ("check", 3, None),
    ]


def test_idle_until_skips_to_the_next_moment_anything_can_change_on_the_grid() -> None:
    clock, seen = VirtualClock(start=T0), []

    def idle_until() -> float | None:
        # what the engine says: its next group evaluation, at 40.2 s, then nothing
        return T0 + 40.2 if clock.now() < T0 + 40.2 else None

    items: list[tuple[float, Item]] = [(T0 + 100, {"n": 0})]
    checks = [(T0 + 20, hook(clock, seen, "check"))]
    run = stepper(clock, seen, start=T0, at_step=True, idle_until=idle_until)
    asyncio.run(run.run(items, until=T0 + 26 * 3600, checks=checks))
    steps = [at for what, at, _ in seen if what == "step"]
    # the check at 20 s, the engine's 40.2 s (the next whole step), the event at 100 s, the end
    assert steps == [0, 20, 41, 100, 26 * 3600]
    assert ("events", 100, ([0], 100)) in seen and seen.index(("check", 20, None)) == 2


def test_without_idle_until_a_replay_steps_every_step_seconds() -> None:
    clock, seen = VirtualClock(start=T0), []
    asyncio.run(stepper(clock, seen, step_seconds=15).run([(T0, {"n": 0}), (T0 + 50, {"n": 1})]))
    assert [at for what, at, _ in seen if what == "step"] == [0, 15, 30, 45]


def test_a_timer_due_by_a_line_fires_before_the_line() -> None:
    clock, seen = VirtualClock(start=T0), []

    async def main() -> None:
        async def timer() -> None:
            await clock.sleep(2)
            seen.append(("timer", clock.now() - T0, None))

        task = asyncio.create_task(timer())
        await asyncio.sleep(0)
        await Stepper(clock, lambda batch, at: seen.append(("events", clock.now() - T0, None))).run(
            [(T0 + 2, {"n": 0})]
        )
        await task

    asyncio.run(main())
    assert seen == [("timer", 2, None), ("events", 2, None)]


RULE = """
groups:
  - name: t
    interval: 1s
    rules:
      - alert: TaskFailed
        event: task-failed
        by: [task]
        resolve_after: 10m
"""


def test_a_rule_tests_last_expectation_at_a_fractional_time_is_checked(tmp_path: Path) -> None:
    """A wrong expectation must fail wherever it stands: the last one at 5.5 s was never compared
    (the run stopped at 5 s), so a test that expects the opposite of the truth passed."""
    from alertd.ruletest.runner import run_test_files

    (tmp_path / "rules.yaml").write_text(RULE)
    (tmp_path / "t_test.yaml").write_text("""
rule_files: [rules.yaml]
tests:
  - name: wrong on purpose
    events:
      - {at: 1s, type: task-failed, task: a}
    expect:
      - {at: 5.5s, alerts: []}
""")
    (result,) = run_test_files([tmp_path / "t_test.yaml"])
    assert not result.ok and "at 5s500ms" in result.message, result
