"""The web page in headless Chromium against a running alertd with a real alert: silence this,
the silence suppresses the next page, expire lets it through, a read-only token sees no writes.
Screenshots go to test-artifacts/."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port
from tests.daemon_fixtures import READ_TOKEN, SILENCE_TOKEN, hook_posts, producer, wait_until, write_setup

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium is not installed (apt-get install chromium): the browser tests need it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_silence_from_the_page_then_expire(
    tmp_path: Path,
    redis_url: str,
    unique: str,
    http_sink: Any,
    celery_worker_factory: Any,
    alertd_process: Any,
    browser: Any,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    cfg = write_setup(
        tmp_path,
        broker=redis_url,
        store="sqlite:///state.db",
        sink_url=http_sink.url(),
        port=port,
        keyprefix=f"{unique}:",
    )
    daemon = alertd_process(cfg, port)
    queue = f"q-{unique}"
    worker = celery_worker_factory(redis_url, extra_env={"ALERTD_TEST_KEYPREFIX": f"{unique}:"}, queues=[queue])
    producer(redis_url, f"{unique}:").send_task("t.fail", queue=queue)
    wait_until(lambda: hook_posts(http_sink), timeout=20, what="the first page")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"http://127.0.0.1:{port}/")
    page.fill("#token", SILENCE_TOKEN)
    page.click("#token-form button")
    alert = page.locator(".alert", has_text="TaskFailed").first
    alert.wait_for(timeout=10_000)
    assert "t.fail failed" in alert.inner_text()
    page.screenshot(path=str(ARTIFACTS / "ui-1-firing.png"), full_page=True)

    # why is it here: the route, the receiver and the last notification with its reason
    alert.locator("button.explain-this").click()
    explain = alert.locator(".explain")
    explain.wait_for(timeout=5_000)
    assert "→ hook" in explain.inner_text() and "(first notification)" in explain.inner_text()

    alert.locator("button.silence-this").click()
    assert 'task="t.fail"' in page.input_value("#silence-matchers")
    page.fill("#silence-comment", "deploying a fix")
    page.click("#silence-preview")
    page.locator("#preview", has_text="Would silence 1 firing alert").wait_for(timeout=5_000)
    page.screenshot(path=str(ARTIFACTS / "ui-2-silence-form.png"), full_page=True)
    page.click("#silence-save")
    page.locator("#silences tbody tr.active").wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "ui-3-silenced.png"), full_page=True)

    silences = daemon.api.get("/api/v2/silences")
    (s,) = [x for x in silences if x["status"]["state"] == "active"]
    assert s["comment"] == "deploying a fix" and s["createdBy"] == "ops"
    assert daemon.api.get("/api/v2/alerts")[0]["status"]["silencedBy"] == [s["id"]]
    sent = len(hook_posts(http_sink))
    time.sleep(5)  # repeat_interval is 3 s: a repeat would have gone out by now
    assert len(hook_posts(http_sink)) == sent

    page.locator(f'#silences tr[data-id="{s["id"]}"] button.expire').click()
    wait_until(
        lambda: daemon.api.get(f"/api/v2/silence/{s['id']}")["status"]["state"] == "expired",
        timeout=10,
        what="the silence to expire",
    )
    wait_until(lambda: len(hook_posts(http_sink)) > sent, timeout=10, what="the page after expiry")

    # a maintenance window made through the API is listed, with when it applies, and expires from the page
    code, made = daemon.api.call(
        "POST",
        "/api/alertd/v1/maintenance",
        {
            "matchers": ['queue="etl"'],
            "comment": "weekly ETL reload",
            "time_intervals": [
                {
                    "weekdays": ["sunday"],
                    "times": [{"start_time": "02:00", "end_time": "04:00"}],
                    "location": "Europe/Berlin",
                }
            ],
        },
        token=SILENCE_TOKEN,
    )
    assert code == 201, made
    row = page.locator(f'#maintenance tr[data-id="{made["id"]}"]')
    row.wait_for(timeout=10_000)
    assert "sunday 02:00\u201304:00 (Europe/Berlin)" in row.inner_text() and "weekly ETL reload" in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "ui-3b-maintenance.png"), full_page=True)
    row.locator("button.expire").click()
    wait_until(
        lambda: [m["state"] for m in daemon.api.get("/api/alertd/v1/maintenance")] == ["expired"],
        timeout=10,
        what="the maintenance window to expire",
    )

    # a read-only token sees the alert and no write controls
    page.fill("#token", READ_TOKEN)
    page.click("#token-form button")
    page.locator("#whoami", has_text="viewer (read)").wait_for(timeout=10_000)
    page.click('button[data-tab="alerts"]')
    page.locator(".alert", has_text="TaskFailed").first.wait_for(timeout=10_000)
    assert page.locator("button.silence-this").count() == 0
    assert not page.is_visible("#silence-new")
    page.click('button[data-tab="silences"]')
    assert page.locator("#silences button.expire").count() == 0
    assert page.locator("#maintenance button.expire").count() == 0
    page.screenshot(path=str(ARTIFACTS / "ui-4-read-only.png"), full_page=True)
    # the Health tab lists the worker, with its last loss and clock columns (empty: none, in sync)
    page.click('button[data-tab="health"]')
    row = page.locator("#workers tbody tr", has_text=worker.hostname)
    row.wait_for(timeout=10_000)
    assert row.locator("td").count() == 9 and "online" in row.inner_text()
    worker.kill()
