"""The built-in templates and what every template is given: counts in titles, common labels once,
runbook links, trimmed tracebacks, escaped HTML, a sandbox, overrides by path, and a template that
breaks at send time still delivering the page (with the generic template)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from alertd.alert import Alert, AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.notify.delivery import ReceiverError
from alertd.notify.service import Notifier
from alertd.notify.template import Templates, build_context
from alertd.store.sqlite import SqliteStore
from tests.notify_fixtures import T0, Sink, Stepper, sink_posts

TRACEBACK = "Traceback (most recent call last):\n" + "".join(
    f'  File "/app/billing/step{i}.py", line {i}, in step{i}\n    step{i + 1}()\n' for i in range(200)
)
TRACEBACK += "ValueError: card declined for customer 42"


def failing(queue: str, **annotations: str) -> Alert:
    return Alert(
        labels={
            "alertname": "CeleryTaskFailureRateHigh",
            "task": "billing.charge",
            "queue": queue,
            "severity": "warning",
        },
        annotations={"summary": f"billing.charge fails on {queue}", **annotations},
        starts_at=T0,
        value=0.12,
    )


def context(firing: list[Alert], resolved: list[Alert] | None = None, reason: str = "first notification") -> dict:  # type: ignore[type-arg]
    return build_context(
        receiver="team",
        group_key="root{alertname,task}",
        group_labels={"alertname": "CeleryTaskFailureRateHigh", "task": "billing.charge"},
        firing=firing,
        resolved=resolved or [],
        reason=reason,
        external_url="https://alertd.example.com",
        now=T0 + 700,
    )


def test_slack_title_counts_common_labels_once_and_runbook_links() -> None:
    gone = failing("d")
    gone.state, gone.ends_at = AlertState.RESOLVED, T0 + 600
    ctx = context(
        [failing(q, runbook_url="https://runbooks.example.com/failures") for q in "abc"], [gone], "new alerts in group"
    )
    out = Templates().render("slack", ctx)
    assert out.title == "[FIRING:3] CeleryTaskFailureRateHigh billing.charge"
    assert out.body.startswith("**Firing** (3) · _new alerts in group_")
    # labels all alerts share appear once; each alert shows only its own
    assert out.body.count("`task=billing.charge`") == 1 and out.body.count("`queue=a`") == 1
    assert out.body.count("[Runbook](https://runbooks.example.com/failures)") == 3
    assert "**Resolved** (1)" in out.body and "after 10m" in out.body
    assert "[Open alertd](https://alertd.example.com)" in out.body


def test_resolved_title_has_no_count() -> None:
    a = failing("a")
    a.state, a.ends_at = AlertState.RESOLVED, T0 + 60
    for name in ("slack", "generic", "email", "pagerduty"):
        assert Templates().render(name, context([], [a], "all resolved")).title == (
            "[RESOLVED] CeleryTaskFailureRateHigh billing.charge"
        )


@pytest.mark.parametrize("name", ["slack", "generic", "email", "pagerduty", "json"])
def test_a_task_traceback_is_trimmed_to_its_last_lines(name: str) -> None:
    out = Templates().render(name, context([failing("a", traceback=TRACEBACK, description=TRACEBACK)]))
    text = out.body + (out.html or "")
    assert len(text) < 12_000  # 200 frames would be 14 kB per copy
    assert 'File "/app/billing/step0.py"' not in text  # the start is dropped...
    if name in ("generic", "email", "json"):  # ...the end, which says what failed, is kept
        assert "ValueError: card declined for customer 42" in text


def test_huge_labels_and_annotations_are_bounded() -> None:
    a = failing("a", summary="x" * 50_000)
    a.labels["exception"] = "KeyError(" + "y" * 50_000 + ")"
    ctx = context([a])
    assert len(ctx["alerts"][0]["annotations"]["summary"]) <= 2000
    assert len(ctx["alerts"][0]["labels"]["exception"]) <= 300
    assert len(ctx["common_labels"]["exception"]) <= 300
    assert len(Templates().render("generic", ctx).body) < 5000


def test_email_html_escapes_what_comes_from_tasks() -> None:
    out = Templates().render("email", context([failing("<script>alert(1)</script>")]))
    assert out.html is not None and "<script>" not in out.html and "&lt;script&gt;" in out.html
    assert "billing.charge fails on <script>" in out.body  # plain text is not HTML-escaped


def test_json_template_is_alertmanagers_webhook_shape() -> None:
    import json

    doc = json.loads(Templates().render("json", context([failing("a")])).body)
    assert doc["version"] == "4" and doc["status"] == "firing" and doc["reason"] == "first notification"
    assert doc["alerts"][0]["startsAt"] == "2023-11-14T22:13:20Z" and doc["alerts"][0]["endsAt"].startswith("0001")
    assert doc["commonLabels"]["task"] == "billing.charge" and doc["externalURL"] == "https://alertd.example.com"


def test_templates_run_in_a_sandbox(tmp_path: Path) -> None:
    evil = tmp_path / "evil.j2"
    evil.write_text("{% block title %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endblock %}")
    with pytest.raises(SecurityError):
        Templates().render(str(evil), context([failing("a")]))


def receiver_config(sink: Sink, template: str, extra: str = "") -> str:
    return f"""
receivers: [{{name: team, apprise: ["{sink.url(path="/team")}"], retries: 0, template: "{template}"}}]
route: {{receiver: team, group_by: [alertname], group_wait: 1s}}
{extra}"""


async def test_a_receiver_template_path_is_relative_to_alertd_yaml(
    tmp_path: Path, sink: Sink, store: SqliteStore
) -> None:
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "short.j2").write_text(
        "{% block title %}{{ status }} {{ firing | length }}{% endblock %}"
        "{% block body %}{% for a in firing %}{{ a.labels.queue }};{% endfor %}{% endblock %}"
    )
    path = tmp_path / "alertd.yaml"
    path.write_text(receiver_config(sink, "tpl/short.j2"))
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(path), store, clock)
    await Stepper(n, clock).until(T0 + 2, [failing("a"), failing("b")])
    (post,) = sink_posts(sink, "/team")
    assert post["title"] == "firing 2" and post["message"] == "a;b;"


def test_a_missing_or_broken_template_stops_the_load_with_its_line(tmp_path: Path, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    with pytest.raises(ReceiverError, match="template 'nope' not found"):
        Notifier(load_config(text=receiver_config(Sink(1), "nope")), store, clock)
    (tmp_path / "bad.j2").write_text("{% block title %}\n{{ status }\n{% endblock %}")
    with pytest.raises(ReceiverError, match=r"bad.j2' line 2: unexpected '}'"):
        Notifier(load_config(text=receiver_config(Sink(1), str(tmp_path / "bad.j2"))), store, clock)


async def test_a_template_failing_at_send_time_still_delivers_with_the_generic_one(
    tmp_path: Path, sink: Sink, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "fragile.j2").write_text("{% block title %}{{ firing[5].labels.queue }}{% endblock %}")
    clock = VirtualClock(start=T0)
    n = Notifier(load_config(text=receiver_config(sink, str(tmp_path / "fragile.j2"))), store, clock)
    caplog.set_level(logging.ERROR)
    await Stepper(n, clock).until(T0 + 2, [failing("a")])
    (post,) = sink_posts(sink, "/team")
    assert post["title"] == "[FIRING:1] CeleryTaskFailureRateHigh"
    assert "fragile.j2" in caplog.text and "generic template" in caplog.text


def backlog_resolved() -> Alert:
    """A queue backlog that fired at 150 messages and resolved with 3 left: its summary, rendered
    while it fired, still says 150."""
    return Alert(
        labels={"alertname": "CeleryQueueBacklog", "queue": "reports", "severity": "warning"},
        annotations={"summary": "reports has 150 messages"},
        state=AlertState.RESOLVED,
        starts_at=T0,
        ends_at=T0 + 720,
        value=3.0,
    )


@pytest.mark.parametrize("name", ["generic", "slack", "email"])
def test_a_resolved_notice_says_resolved_in_words_with_the_value_it_resolved_at(name: str) -> None:
    """It read "RESOLVED: reports has 150 messages after 12m": the firing summary, stale value and all."""
    gone = backlog_resolved()
    ctx = build_context(
        receiver="team",
        group_key="root{}",
        group_labels={},
        firing=[failing("a")],
        resolved=[gone],
        reason="resolved",
        external_url="",
        now=T0 + 800,
    )
    out = Templates().render(name, ctx)
    text = out.body + (out.html or "")
    assert "CeleryQueueBacklog queue=reports is resolved after 12m, last value 3" in text, text
    assert "while firing:" in text  # the old summary, said to be the old one
    for line in text.splitlines():
        assert not ("150 messages" in line and "while firing" not in line), line
    assert ctx["resolved"][0]["resolved_text"] and ctx["firing"][0]["resolved_text"] == ""
