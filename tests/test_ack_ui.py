"""Ack from the page, in headless Chromium, against the in-process alertd (its real API and page):
an alert card's Ack button, then a group's for the new alert that was not acked; the page shows
who acked and how long ago; the pages stop; the read role sees no Ack button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from alertd.alert import fingerprint
from alertd.api.app import make_app
from alertd.api.context import ApiContext
from tests import api_fixtures
from tests.api_fixtures import READ_TOKEN, SILENCE_TOKEN, ThreadedHarness
from tests.test_silence_cli import fire, pages
from tests.test_ui import ARTIFACTS, browser  # noqa: F401 (registers the fixture)

CHARGE = {"alertname": "TaskFailed", "severity": "critical", "task": "billing.charge"}
REFUND = {**CHARGE, "task": "billing.refund"}


def make_app_with_page(ctx: ApiContext) -> web.Application:
    """The API and the page, as `alertd run` serves them (alertd.apiview.serve)."""
    from alertd.ui import add_routes

    app = make_app(ctx)
    add_routes(app)
    return app


@pytest.fixture(name="served")
def served_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedHarness]:
    monkeypatch.setattr(api_fixtures, "make_app", make_app_with_page)
    t = ThreadedHarness(tmp_path, f"sqlite:///{tmp_path}/state.db", ahead=0)  # the page's "ago" is the browser's clock
    yield t
    t.close()


def test_ack_an_alert_then_a_group_from_the_page(
    served: ThreadedHarness,
    browser: Any,  # noqa: F811 (the fixture of tests/test_ui.py)
) -> None:
    t = served
    ARTIFACTS.mkdir(exist_ok=True)
    t.run(fire(t.h))
    t.run(t.h.step(1))
    assert pages(t) == 1
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda d: d.accept("on it"))
    page.goto(t.base + "/")
    page.fill("#token", SILENCE_TOKEN)
    page.click("#token-form button")
    card = page.locator(".alert", has_text="billing.charge").first
    card.wait_for(timeout=10_000)
    card.locator("button.ack-this").click()
    card = page.locator(".alert", has_text="billing.charge").first
    card.locator(".tag.acked").wait_for(timeout=10_000)
    assert "acked by ops" in card.inner_text() and "on it" in card.inner_text()
    assert card.locator("button.ack-this").count() == 0
    [ack] = t.get_json("/api/alertd/v1/acks")["acks"]
    assert (ack["fingerprints"], ack["acked_by"], ack["comment"]) == ([fingerprint(CHARGE)], "ops", "on it")
    page.screenshot(path=str(ARTIFACTS / "ui-ack-1-acked.png"), full_page=True)
    t.run(t.h.daemon.acking.settle())
    assert pages(t) == 2  # the "acknowledged" notice
    for _ in range(6):  # repeat_interval 3 s: acked, no repeat
        t.h.fail_task()
        t.run(t.h.step(1))
    assert pages(t) == 2

    # a new alert in the group was not acked: it pages, and the group's Ack acks it (only it)
    t.h.fail_task("billing.refund")
    for _ in range(3):
        t.run(t.h.step(1))
    assert pages(t) == 3
    page.reload()
    page.locator(".alert", has_text="billing.refund").first.wait_for(timeout=10_000)
    page.locator(".group-head button.ack-this").click()
    page.locator(".alert", has_text="billing.refund").locator(".tag.acked").wait_for(timeout=10_000)
    acks = t.get_json("/api/alertd/v1/acks")["acks"]
    assert sorted(fp for a in acks for fp in a["fingerprints"]) == sorted([fingerprint(CHARGE), fingerprint(REFUND)])
    assert page.locator(".group-head button.ack-this").count() == 0  # nothing left to ack
    page.screenshot(path=str(ARTIFACTS / "ui-ack-2-group.png"), full_page=True)

    # the read role sees who acked, and no Ack button
    page.fill("#token", READ_TOKEN)
    page.click("#token-form button")
    page.locator("#whoami", has_text="viewer (read)").wait_for(timeout=10_000)
    page.locator(".alert .tag.acked").first.wait_for(timeout=10_000)
    assert page.locator("button.ack-this").count() == 0
