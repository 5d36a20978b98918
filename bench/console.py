"""Console API benchmark, in process: response size and time of the console's endpoints for a
1,000-task-name deployment, after an hour of simulated traffic.

No broker: bench/scale.py's simulated fleet (Zipf task names, each on one queue, workers per
queue, heartbeats, 1 % failures) feeds a real Daemon's observer on a virtual clock for an hour
(the series store's retention); the default rule pack is evaluated every 15 s and the console
samples its gauges as its background task does. Then the real aiohttp app (make_app + the page's
routes) answers each endpoint over a real socket, timed from the client.

    .venv/bin/python bench/console.py [--names 1000 --queues 20 --workers 50 --rate 100 --seconds 3600]
    .venv/bin/python bench/console.py --screenshot docs/img/overview.png   # README's picture
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale import T0, Fleet, rss_mib  # noqa: E402  (bench/scale.py)


async def run(names: int, queues: int, workers: int, rate: float, seconds: int, repeat: int, shot: Path | None) -> None:
    import aiohttp
    from aiohttp.test_utils import TestServer

    from alertd.api.app import make_app
    from alertd.api.console import CONSOLE
    from alertd.clock import VirtualClock
    from alertd.config import load_config
    from alertd.daemon import Daemon
    from alertd.samples import QueueSample, WorkerSample
    from alertd.ui import add_routes as add_page_routes

    tmp = Path(tempfile.mkdtemp(prefix="alertd-bench-console-"))
    cfg = tmp / "alertd.yaml"
    cfg.write_text(f'rule_files: ["{ROOT}/rules/*.yaml"]\nstore: "sqlite:///{tmp}/state.db"\n')
    clock = VirtualClock(T0)
    daemon = Daemon(load_config(cfg), clock, replica="bench")
    await daemon.open_state()  # the page reads silences and history too
    await daemon.notifier.stop()  # nothing is sent from a bench
    daemon.health.mark_connected(T0)
    app = make_app(daemon)
    add_page_routes(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    console = app[CONSOLE]
    fleet = Fleet(names, queues, workers, rate)
    base_rss = rss_mib()
    fed = 0
    samples: list[float] = []
    wall = time.perf_counter()
    for s in range(seconds):
        batch = fleet.second(s)
        daemon.observer.on_events(batch)
        fed += len(batch)
        daemon.health.events = fed
        if batch:
            daemon.health.last_event_at = batch[-1]["local_received"]
        now = T0 + s + 1
        clock.set(now)
        if s % 5 == 0:
            for q, queue in enumerate(fleet.queues):
                daemon.observer.on_queue_sample(QueueSample(queue, (s // 5 + q) % 40, 3, now))
        if s % 15 == 0:
            for w, host in enumerate(fleet.workers):
                daemon.observer.on_worker_sample(
                    WorkerSample(host, now, pool_size=8, memory_bytes=(200 + w) << 20, cpu_seconds=s * 0.3)
                )
            daemon.engine.tick(now)
        if console.recorder.due(now):
            console.sample()
            samples.append(console.sample_seconds)
    fill = time.perf_counter() - wall
    hot = fleet.names[0]
    endpoints = [
        ("overview", "/api/alertd/v1/console/overview"),
        ("tasks (15 min)", "/api/alertd/v1/console/tasks?window=900"),
        ("tasks (1 h)", "/api/alertd/v1/console/tasks?window=3600"),
        ("task detail, hottest name, 1 h", f"/api/alertd/v1/console/task?task={hot}&range=3600"),
        ("workers", "/api/alertd/v1/console/workers"),
        ("queues", "/api/alertd/v1/console/queues"),
        ("alert values", "/api/alertd/v1/console/alert-values"),
    ]
    print(
        f"{names} task names, {queues} queues, {workers} workers, {rate:g} tasks/s for {seconds} s: "
        f"{fed:,} events fed in {fill:.0f} s; RSS +{rss_mib() - base_rss:.0f} MiB; "
        f"{len(console.recorder._series):,} sampled series, a sample takes median "
        f"{statistics.median(samples) * 1e3:.1f} ms, max {max(samples) * 1e3:.1f} ms"
    )
    print(f"| endpoint | bytes | gzip | first | median of {repeat} | rows |")
    print("|---|---:|---:|---:|---:|---:|")
    async with aiohttp.ClientSession() as session:
        for label, path in endpoints:
            times: list[float] = []
            body = b""
            for _ in range(repeat + 1):
                t = time.perf_counter()
                async with session.get(server.make_url(path)) as r:
                    body = await r.read()
                    assert r.status == 200, (path, r.status, body[:200])
                times.append(time.perf_counter() - t)
            import gzip
            import json

            doc: Any = json.loads(body)
            rows = next((len(v) for k, v in doc.items() if k in ("tasks", "workers", "queues")), "")
            print(
                f"| {label} | {len(body):,} | {len(gzip.compress(body)):,} | {times[0] * 1e3:.1f} ms "
                f"| {statistics.median(times[1:]) * 1e3:.1f} ms | {rows} |"
            )
    if shot is not None:
        await screenshot(f"http://127.0.0.1:{server.port}/#tab=overview", shot)
    await server.close()
    await daemon.stop()


async def screenshot(url: str, path: Path) -> None:
    """The overview of the simulated hour in headless Chromium (README's picture, docs/img/)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1280, "height": 420})
        await page.goto(url)
        await page.locator('.tile[data-key="tasks_per_second"] svg.spark path').wait_for(state="attached")
        await page.screenshot(path=str(path))
        await browser.close()
    print(f"overview screenshot: {path} ({path.stat().st_size:,} bytes)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--names", type=int, default=1000)
    p.add_argument("--queues", type=int, default=20)
    p.add_argument("--workers", type=int, default=50)
    p.add_argument("--rate", type=float, default=100.0, help="tasks per simulated second")
    p.add_argument("--seconds", type=int, default=3600, help="simulated seconds (the retention: an hour)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--screenshot", type=Path, help="also save the overview page as this PNG (needs chromium)")
    a = p.parse_args()
    asyncio.run(run(a.names, a.queues, a.workers, a.rate, a.seconds, a.repeat, a.screenshot))


if __name__ == "__main__":
    main()
