"""Flapping (issue 11): a label set whose condition keeps dropping and coming back is one alert.

The engine, observer and notifier are the real ones on a virtual clock; delivery is real (Apprise
json:// to a local aiohttp sink). The first test drives the default rule pack as shipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify.service import Notifier
from alertd.observe.observer import Observer
from alertd.observe.series import SeriesStore
from alertd.rules.engine import Engine
from alertd.rules.loader import load_rules
from alertd.samples import QueueSample
from alertd.store.sqlite import SqliteStore
from alertd.yamlfile import FileError
from tests.notify_fixtures import T0, Sink, one_receiver, sink_posts

ROOT = Path(__file__).resolve().parent.parent


class Bench:
    """Queue samples every 5 s (as the sampler takes them), rules ticked every second."""

    def __init__(self, rule_paths: list[Path], notifier: Notifier | None = None) -> None:
        self.clock = VirtualClock(start=T0)
        self.series = SeriesStore(bucket_seconds=5)
        self.observer = Observer(self.series, self.clock)
        self.engine = Engine(load_rules(rule_paths), self.series, self.clock, gauges=self.observer.gauges)
        self.notifier = notifier
        self.transitions: list[tuple[int, str, str]] = []  # (second, alertname, state)

    async def run(self, seconds: int, messages: int, queue: str = "reports") -> None:
        for _ in range(seconds):
            self.clock.advance(1)
            now = self.clock.now()
            if round(now - T0) % 5 == 0:
                self.observer.on_queue_sample(QueueSample(queue, messages, 1, now))
            for a in self.engine.tick(now):
                self.transitions.append((round(now - T0), a.labels["alertname"], a.state.value))
            if self.notifier is not None:
                self.notifier.put(self.engine.alerts())
                await self.notifier.flush_due()

    async def bounce(self, minutes: float, high: int, low: int, period: int = 40) -> None:
        """The queue crosses its threshold every `period` seconds: high for half, low for half."""
        for _ in range(int(minutes * 60 / period)):
            await self.run(period // 2, high)
            await self.run(period // 2, low)

    def of(self, name: str) -> list[tuple[int, str]]:
        return [(t, s) for t, n, s in self.transitions if n == name]


async def test_a_queue_bouncing_around_its_threshold_for_ten_minutes_pages_once(
    tmp_path: Path, sink: Sink, store: SqliteStore
) -> None:
    """The shipped CeleryQueueLong (above 100 for 5m) on a queue at 150 / 20 every 40 s.

    Before flapping existed this paged nothing at all - `for: 5m` is never met by 20-second
    stretches - although the queue was over its threshold half of those ten minutes. Without the
    hold it would page again at every bounce once `for` is met."""
    b = Bench([ROOT / "rules" / "celery.yaml"])
    b.notifier = Notifier(load_config(text=one_receiver(sink)), store, b.clock)
    await b.bounce(10, high=150, low=20)
    # evaluated every 15 s: over at 15, 45, 90; the drop at 105 is the third, so the episode that
    # began at 90 is held through its drops and meets `for: 5m` at the first evaluation over after 390
    assert b.of("CeleryQueueLong") == [(405, "firing")], b.of("CeleryQueueLong")
    firing = [a for a in b.engine.alerts() if a.labels["alertname"] == "CeleryQueueLong"]
    assert [a.state for a in firing] == [AlertState.FIRING]
    assert "flapping" in firing[0].annotations["flapping"]
    await b.run(9 * 60, 20)  # quiet, but not yet for a whole window: still held
    assert b.of("CeleryQueueLong") == [(405, "firing")]
    await b.run(2 * 60, 20)
    assert [s for _, s in b.of("CeleryQueueLong")] == ["firing", "resolved"]

    posts = [p for p in sink_posts(sink, "/team") if "CeleryQueueLong" in p["title"]]
    assert [p["type"] for p in posts] == ["failure", "success"], posts
    assert "flapping" in posts[0]["message"]


FOR_ZERO = """
groups:
  - name: q
    interval: 1s
    flapping: {threshold: 3, window: 5m}
    rules:
      - alert: QueueLong
        metric: queue_length
        by: [queue]
        above: 100
      - alert: QueueLongUnheld
        metric: queue_length
        by: [queue]
        above: 100
        flapping: false
"""


async def test_a_rule_without_for_is_held_from_its_threshold_th_drop(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(FOR_ZERO)
    b = Bench([path])
    await b.bounce(4, high=150, low=20)  # 6 bounces of 40 s
    # fires at the first sample over, resolves at the first two drops; the third makes it flapping
    assert b.of("QueueLong") == [(5, "firing"), (25, "resolved"), (45, "firing"), (65, "resolved"), (85, "firing")]
    # `flapping: false` on a rule overrides its group's: every bounce is an episode
    assert len(b.of("QueueLongUnheld")) == 12
    # the last sample over the threshold was at 220 and stood until 224: quiet from 225
    await b.run(5 * 60, 20)
    assert b.of("QueueLong")[-1] == (224 + 300, "resolved")


async def test_drops_older_than_the_window_do_not_count(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(FOR_ZERO)
    b = Bench([path])
    for _ in range(4):  # a drop every 3 minutes: at most 2 within any 5 minutes
        await b.run(20, 150)
        await b.run(160, 20)
    assert [s for _, s in b.of("QueueLong")] == ["firing", "resolved"] * 4
    assert all("flapping" not in a.annotations for a in b.engine.alerts())


async def test_a_flapping_alert_survives_a_restart_held(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(FOR_ZERO)
    b = Bench([path])
    await b.bounce(2.5, high=150, low=20)
    assert b.of("QueueLong")[-1][1] == "firing"
    saved = b.engine.export_state()
    again = Bench([path])
    again.clock.advance(b.clock.now() - T0)
    again.engine.import_state(saved)
    await again.run(60, 20)  # a minute low after the restart: still one held alert
    assert again.transitions == []
    assert [a.state for a in again.engine.alerts() if a.labels["alertname"] == "QueueLong"] == [AlertState.FIRING]


@pytest.mark.parametrize(
    ("flapping", "field"),
    [("{threshold: 1}", "threshold"), ("{window: 0s}", "window"), ("{treshold: 3}", "treshold"), ("yes", "flapping")],
)
def test_a_bad_flapping_option_names_file_line_and_field(tmp_path: Path, flapping: str, field: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(FOR_ZERO.replace("flapping: false", f"flapping: {flapping}"))
    with pytest.raises(FileError) as e:
        load_rules([path])
    text = str(e.value)
    assert "rules.yaml" in text and ":15" in text and field in text, text
