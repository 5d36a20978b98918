"""The page's Periodic tab in headless Chromium against `alertd run` reading a beat schedule:
every entry with its schedule in words and next expected run; an entry that never ran past its
time is shown overdue and counted on the tab. Screenshot in test-artifacts/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.daemon_fixtures import READ_TOKEN, write_setup
from tests.test_ui import ARTIFACTS, browser  # noqa: F401 (registers the fixture)


def test_the_periodic_tab_lists_every_entry_and_shows_an_overdue_one(
    tmp_path: Path,
    redis_url: str,
    unique: str,
    alertd_process: Any,
    browser: Any,  # noqa: F811 (the fixture of tests/test_ui.py)
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    cfg = write_setup(
        tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url="json://127.0.0.1:9/hook", port=port,
        keyprefix=f"{unique}:", extra='periodic: {app: "tests.beatapp:app", reload: 1s}',
    )  # fmt: skip
    schedule = {"hourly-report": {"task": "p.ok", "every": 3600}, "every-2s": {"task": "p.ok", "every": 2, "args": [2]}}
    alertd_process(cfg, port, env={"ALERTD_TEST_BEAT": json.dumps(schedule)})  # no beat runs: nothing is sent

    page = browser.new_page(viewport={"width": 1280, "height": 700})
    page.goto(f"http://127.0.0.1:{port}/")
    page.fill("#token", READ_TOKEN)
    page.click("#token-form button")
    page.click('button[data-tab="periodic"]')
    hourly = page.locator('#periodic tr[data-entry="hourly-report"]')
    hourly.wait_for(timeout=10_000)
    assert "every hour" in hourly.inner_text() and "waiting" in hourly.inner_text()
    assert "in 1h" in hourly.inner_text() or "in 60m" in hourly.inner_text()
    overdue = page.locator('#periodic tr.firing[data-entry="every-2s"]')
    overdue.wait_for(timeout=15_000)  # next poll after 2 s without a send
    assert "every 2 seconds" in overdue.inner_text() and "overdue" in overdue.inner_text()
    assert page.inner_text("#count-periodic") == "1"
    page.screenshot(path=str(ARTIFACTS / "ui-periodic.png"), full_page=True)
