"""The console in headless Chromium against a real `alertd run` fed by a real Celery worker: each
tab shows real data, a filter in the URL filters, an alert routed to two receivers is one card
with both, a maintenance window scheduled from the page silences the page once it starts, the
read role sees no write controls, and nothing logs an error to the browser's console.
Screenshots (1280 px and a 390 px phone) go to test-artifacts/."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.daemon_fixtures import READ_TOKEN, SILENCE_TOKEN, producer, wait_until, write_setup
from tests.test_ui import ARTIFACTS, browser  # noqa: F401 (the fixture)

RULES = """
groups:
  - name: test
    interval: 1s
    rules:
      - alert: TaskFailed
        event: task-failed
        by: [task]
        resolve_after: 10m
        labels: {severity: critical}
        annotations: {summary: "{{ labels.task }} failed"}
      - alert: HighFailureRatio
        metric: task_failure_ratio
        window: 5m
        by: [task, queue]
        above: 0.3
        labels: {severity: warning}
        annotations: {summary: "{{ labels.task }} fails often"}
"""
# critical alerts go to hook and, through `continue`, to oncall as well
ROUTE = """
route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 3s
  routes:
    - matchers: ['severity="critical"']
      receiver: hook
      continue: true
    - matchers: ['severity="critical"']
      receiver: oncall
"""


def posts(sink: Any, path: str) -> list[dict[str, Any]]:
    return [r for r in sink.requests if r["path"] == path]


def open_page(chromium: Any, base: str, token: str, errors: list[str], path: str = "/", width: int = 1280) -> Any:
    page = chromium.new_page(viewport={"width": width, "height": 900})
    page.add_init_script(f"localStorage.setItem('alertd-token', {token!r})")
    page.on("console", lambda m: errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(base + path)
    return page


def sent_counted(daemon: Any, task: str) -> bool:
    _, text = daemon.api.call("GET", "/metrics", token=READ_TOKEN)
    return any(line.startswith("celery_task_sent_total{") and f'name="{task}"' in line for line in text.splitlines())


def test_console_tabs_filters_cards_and_maintenance_window(
    tmp_path: Path,
    redis_url: str,
    unique: str,
    http_sink: Any,
    celery_worker_factory: Any,
    alertd_process: Any,
    browser: Any,  # noqa: F811
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    from tests.conftest import free_port

    port = free_port()
    queue = f"q-{unique}"
    cfg = write_setup(
        tmp_path,
        broker=redis_url,
        store="sqlite:///state.db",
        sink_url=http_sink.url(),
        port=port,
        keyprefix=f"{unique}:",
        rules=RULES,
        route=ROUTE,
        extra="observe: {bucket: 1s}",
    )
    text = cfg.read_text().replace("queues: []", f"queues: [{queue}]")
    text = text.replace(
        "receivers:\n",
        f'receivers:\n  - name: oncall\n    apprise: ["{http_sink.url(path="/oncall")}"]\n    retries: 0\n',
    )
    cfg.write_text(text)
    daemon = alertd_process(cfg, port)
    worker = celery_worker_factory(redis_url, extra_env={"ALERTD_TEST_KEYPREFIX": f"{unique}:"}, queues=[queue])
    app = producer(redis_url, f"{unique}:")
    # A first task, and its task-sent seen: from then on a task whose worker events beat its own
    # task-sent waits for it (alertd.observe.reorder), so each task below is one row
    app.send_task("t.sleep", args=(0,), queue=queue)
    wait_until(lambda: sent_counted(daemon, "t.sleep"), timeout=20, what="the first task-sent")
    for i in range(4):
        app.send_task("t.add", args=(i, 1), queue=queue)
    for _ in range(2):
        app.send_task("t.fail", queue=queue)
    wait_until(
        lambda: posts(http_sink, "/hook") and posts(http_sink, "/oncall"), timeout=30, what="pages to both receivers"
    )
    wait_until(
        lambda: (
            {a["labels"]["alertname"] for a in daemon.api.get("/api/v2/alerts")} == {"TaskFailed", "HighFailureRatio"}
        ),
        timeout=20,
        what="both alerts firing",
    )
    base = f"http://127.0.0.1:{port}"
    errors: list[str] = []

    # -- alerts: one card per alert with all its receivers; the metric alert's value and threshold
    page = open_page(browser, base, SILENCE_TOKEN, errors, "/#tab=alerts")
    failed = page.locator("#alert-groups .alert", has_text="TaskFailed")
    failed.first.wait_for(timeout=10_000)
    assert failed.count() == 1
    receivers = failed.locator(".receivers").inner_text()
    assert "→ hook" in receivers and "→ oncall" in receivers
    ratio = page.locator("#alert-groups .alert", has_text="HighFailureRatio")
    ratio.locator(".why svg.spark").wait_for(timeout=10_000)
    assert "task_failure_ratio" in ratio.inner_text() and "above 30%" in ratio.inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-alerts.png"), full_page=True)

    # autocompletion: a label name, then its values; choosing one filters and goes into the URL
    page.click("#filter")
    page.keyboard.type("sev")
    page.locator("#suggest li", has_text="severity=").first.click()
    page.locator("#suggest li", has_text="severity=critical").click()
    page.locator("#alert-groups .alert", has_text="HighFailureRatio").wait_for(state="detached", timeout=10_000)
    assert failed.count() == 1 and "filter=severity%3Dcritical" in page.url
    # grouped by a label: one group per severity
    page.fill("#filter", "")
    page.press("#filter", "Enter")
    page.select_option("#group-by", "severity")
    page.locator('.group[data-group="severity=warning"]').wait_for(timeout=10_000)
    assert page.locator('.group[data-group="severity=critical"] .alert').count() == 1
    page.close()

    # a filter in a shared URL filters on load
    page = open_page(
        browser, base, READ_TOKEN, errors, "/#tab=alerts&filter=alertname%3DHighFailureRatio%20severity!%3Dinfo"
    )
    page.locator("#alert-groups .alert", has_text="HighFailureRatio").wait_for(timeout=10_000)
    assert page.locator("#alert-groups .alert", has_text="TaskFailed").count() == 0
    assert page.input_value("#filter") == "alertname=HighFailureRatio severity!=info"

    # -- the read role sees no write controls
    page.locator("#whoami", has_text="viewer (read)").wait_for(timeout=10_000)
    assert page.locator("button.silence-this").count() == 0
    page.click('button[data-tab="silences"]')
    assert not any(page.is_visible(b) for b in ("#silence-new", "#maintenance-new", "#mw-new"))
    assert page.locator("#silences button.expire, #silences button.edit").count() == 0

    # -- overview, tasks, workers, queues, rules, health: real numbers
    # the failure tile is the ratio over the last sample step (3 buckets, 3 s here): tasks ran
    # at the start, so a slow run of the steps above left that step empty (a dash); run a few
    # now. A fast task's worker events can beat the producer's task-sent to alertd: it still
    # shows as one row, under its queue (alertd.observe.reorder; the strict locators below)
    app.send_task("t.fail", queue=queue)
    app.send_task("t.add", args=(9, 1), queue=queue)
    page.click('button[data-tab="overview"]')
    page.locator('.tile[data-key="workers_online"] .tile-value', has_text="1").wait_for(timeout=10_000)
    assert page.locator('.tile[data-key="firing"] .tile-value').inner_text() == "2"
    page.locator('.tile[data-key="failure_ratio"] .tile-value', has_text="%").wait_for(timeout=10_000)
    assert page.locator(".tile svg.spark").count() == 7
    page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)

    page.click('button[data-tab="tasks"]')
    row = page.locator('#tasks tr[data-task="t.fail"]')
    row.wait_for(timeout=10_000)
    assert "100%" in row.inner_text() and queue in row.inner_text() and "ValueError" in row.inner_text()
    assert "0%" in page.locator('#tasks tr[data-task="t.add"]').inner_text()
    page.click('#tasks th[data-key="task"]')  # sortable: by name
    assert page.locator("#tasks tbody tr").first.get_attribute("data-task") == "t.add"
    page.fill("#task-filter", "fail")
    assert page.locator("#tasks tbody tr").count() == 1
    row.click()
    page.locator("#task-detail svg.chart").first.wait_for(timeout=10_000)
    assert page.locator("#task-detail svg.chart").count() == 4
    assert "ValueError" in page.locator("#task-detail .failure summary").first.inner_text()
    assert page.locator("#task-detail button.range", has_text="6 h").is_disabled()  # an hour is kept
    page.screenshot(path=str(ARTIFACTS / "console-tasks.png"), full_page=True)

    page.click('button[data-tab="workers"]')
    wrow = page.locator(f'#console-workers tr[data-worker="{worker.hostname}"]', has_text=queue)
    wrow.wait_for(timeout=10_000)  # its queues come with the sampler's first pass over the workers
    assert "online" in wrow.inner_text() and wrow.locator("svg.spark").count() == 4
    page.screenshot(path=str(ARTIFACTS / "console-workers.png"), full_page=True)

    page.click('button[data-tab="queues"]')
    qrow = page.locator(f'#queues tr[data-queue="{queue}"]')
    qrow.wait_for(timeout=10_000)
    assert "t.add" in qrow.inner_text() and "t.fail" in qrow.inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-queues.png"), full_page=True)

    page.click('button[data-tab="rules"]')
    value = page.locator("#rules tr", has_text="HighFailureRatio").locator(".value b").first
    value.wait_for(timeout=10_000)
    assert value.inner_text().endswith("%"), value.inner_text()  # a ratio, humanised
    page.screenshot(path=str(ARTIFACTS / "console-rules.png"), full_page=True)
    # what the Rules tab showed as 5.36e+7 for a memory rule, and the other units
    shown = page.evaluate(
        "import('/ui/fmt.js').then(f => [f.fmt(5.36e7, 'bytes'), f.fmt(0.0042, 'seconds'), f.fmt(5400, 'seconds'),"
        " f.fmt(0.123, 'ratio'), f.fmt(12.345, 'rate'), f.fmt(53600000, '')])"
    )
    assert shown == ["51.1 MiB", "4.2 ms", "1h 30m", "12%", "12.3/s", "53.6M"], shown
    page.click('button[data-tab="history"]')
    page.locator("#history tbody tr.sent").first.wait_for(timeout=10_000)
    page.screenshot(path=str(ARTIFACTS / "console-history.png"), full_page=True)
    page.click('button[data-tab="health"]')
    # the rate is the daemon's own sample, there at the first render (it was "…" until a second poll)
    rate = page.locator("#health dt", has_text="Ingest rate").locator("xpath=following-sibling::dd[1]")
    assert "events/s" in rate.inner_text(), rate.inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-health.png"), full_page=True)
    page.close()

    # -- a phone: one column, nothing wider than the screen
    phone = open_page(browser, base, READ_TOKEN, errors, "/#tab=overview", width=390)
    phone.locator('.tile[data-key="workers_online"] .tile-value', has_text="1").wait_for(timeout=10_000)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 392
    phone.screenshot(path=str(ARTIFACTS / "console-phone-overview.png"), full_page=True)
    phone.click('button[data-tab="alerts"]')
    phone.locator("#alert-groups .alert").first.wait_for(timeout=10_000)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 392
    phone.screenshot(path=str(ARTIFACTS / "console-phone-alerts.png"), full_page=True)
    phone.close()

    # -- a maintenance window scheduled from the page starts later and then suppresses the page
    page = open_page(browser, base, SILENCE_TOKEN, errors, "/#tab=silences")
    page.locator("#maintenance-new").click()
    page.fill("#silence-matchers", 'alertname="TaskFailed"')
    page.fill("#silence-starts", "+5s")
    page.fill("#silence-duration", "10m")
    page.fill("#silence-comment", "database maintenance")
    page.click("#silence-preview")
    page.locator("#preview", has_text="Would silence 1 firing alert").wait_for(timeout=5_000)
    page.click("#silence-save")
    page.locator("#silences tbody tr.pending", has_text="scheduled").wait_for(timeout=10_000)
    (s,) = [x for x in daemon.api.get("/api/v2/silences") if x["comment"] == "database maintenance"]
    assert s["status"]["state"] == "pending"
    page.screenshot(path=str(ARTIFACTS / "console-maintenance.png"), full_page=True)
    wait_until(
        lambda: any(
            a["status"]["silencedBy"] == [s["id"]]
            for a in daemon.api.get("/api/v2/alerts")
            if a["labels"]["alertname"] == "TaskFailed"
        ),
        timeout=15,
        what="the window to start and silence TaskFailed",
    )
    sent = len(posts(http_sink, "/oncall"))
    time.sleep(4)  # repeat_interval is 3 s: a repeat would have gone out by now
    assert len(posts(http_sink, "/oncall")) == sent
    # silenced alerts can be left out with the filter bar's checkbox
    page.click('button[data-tab="alerts"]')
    page.locator("#alert-groups .alert", has_text="TaskFailed").locator(".tag.silenced").wait_for(timeout=10_000)
    page.uncheck("#show-silenced")
    page.locator("#alert-groups .alert", has_text="TaskFailed").wait_for(state="detached", timeout=10_000)
    assert "silenced=false" in page.url

    # a recurring window made on the page, listed with when it applies, then expired
    page.click('button[data-tab="silences"]')
    page.click("#mw-new")
    page.fill("#mw-matchers", 'queue="etl"')
    page.fill("#mw-weekdays", "sunday")
    page.fill("#mw-times", "02:00-04:00")
    page.fill("#mw-location", "Europe/Berlin")
    page.fill("#mw-comment", "weekly ETL reload")
    page.click("#mw-preview")
    page.locator("#mw-preview-out", has_text="Matches 0 firing alert").wait_for(timeout=5_000)
    page.click("#mw-save")
    row = page.locator("#maintenance tbody tr", has_text="weekly ETL reload")
    row.wait_for(timeout=10_000)
    assert "sunday 02:00\u201304:00 (Europe/Berlin)" in row.inner_text()
    row.locator("button.expire").click()
    wait_until(
        lambda: [m["state"] for m in daemon.api.get("/api/alertd/v1/maintenance")] == ["expired"],
        timeout=10,
        what="the recurring window to expire",
    )
    page.close()

    assert errors == [], errors
    worker.kill()
