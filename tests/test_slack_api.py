"""The native Slack receiver (Web API, bot token) against a local Slack API: one message per
incident, updated in place with a thread reply per change, across a restart and HA replicas on a
real Redis store; a deleted message posted anew; Slack's errors retried and recorded with the
token nowhere in logs, history or errors."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from alertd.alert import AlertState
from alertd.clock import VirtualClock
from alertd.config import load_config
from alertd.dispatch.groups import AlertGroup
from alertd.notify.delivery import ReceiverError
from alertd.notify.service import Notifier
from alertd.store.base import HistoryQuery
from alertd.store.redis import RedisStore
from alertd.store.sqlite import SqliteStore
from alertd.yamlfile import FileError
from tests.notify_fixtures import Stepper, make_alert
from tests.slack_fixtures import BOT_TOKEN, CHANNEL_ID, FakeSlack, slack_receiver
from tests.waiting import T0

pytestmark = pytest.mark.broker  # the HA test uses the local Redis


@pytest.fixture
async def redis_store(redis_url: str, unique: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(redis_url, prefix=f"slack-{unique}:")
    await s.open()
    yield s
    await s.close()


def links(group: AlertGroup, now: float) -> Mapping[str, str]:
    return {"ack_url": f"https://alertd.example/ack/{group.key[:8]}", "silence_url": "https://alertd.example/s/2h"}


def notifier(
    slack: FakeSlack, store: Any, clock: VirtualClock, replica: str = "", extra: str = "", retries: int = 0
) -> Notifier:
    n = Notifier(load_config(text=slack_receiver(slack, extra, retries=retries)), store, clock, replica=replica)
    n.renderer.links = links  # the acknowledgement package fills these; here: fixed signed-looking URLs
    return n


def alert(queue: str, state: AlertState | None = None, starts_at: float = T0) -> Any:
    return make_alert("QueueLong", state, starts_at=starts_at, queue=queue)


async def test_one_message_per_incident_updated_in_place_across_restart_and_replicas(
    slack: FakeSlack, redis_store: RedisStore
) -> None:
    clock = VirtualClock(start=T0)
    a, b = alert("a"), alert("b")
    n1 = notifier(slack, redis_store, clock)
    await Stepper(n1, clock, step=5).until(T0 + 35, [a])
    (post,) = slack.posts()
    assert post.body["channel"] == "#ops" and "QueueLong" in post.body["text"]
    ts = next(iter(slack.messages))
    kinds = [blk["type"] for blk in post.body["blocks"]]
    assert kinds[0] == "header" and "section" in kinds and "actions" in kinds
    (actions,) = [blk for blk in post.body["blocks"] if blk["type"] == "actions"]
    group = next(iter(n1.groups_by_key.values()))
    assert [(e["text"]["text"], e["url"]) for e in actions["elements"]] == [
        ("Ack", links(group, 0)["ack_url"]),
        ("Silence 2h", "https://alertd.example/s/2h"),
    ]
    entry = await n1.nflog.get("ops", next(iter(n1.groups_by_key)))
    assert entry is not None and entry.refs == {"slack": {"channel": CHANNEL_ID, "ts": ts}}

    # 1. a new alert in the group: the same message, updated, and a reply in its thread
    await Stepper(n1, clock, step=5).until(T0 + 100, [a, b])
    # 2. a restart (a new Notifier on the same store): b resolves
    n2 = notifier(slack, redis_store, clock)
    await Stepper(n2, clock, step=5).until(T0 + 140, [a, alert("b", AlertState.RESOLVED)])
    # 3. another replica sends the repeat
    r2 = notifier(slack, redis_store, clock, replica="r2")
    await Stepper(r2, clock, step=60).until(T0 + 140 + 3600 + 120, [a])

    assert len(slack.posts()) == 1, [c.body.get("text") for c in slack.posts()]
    updates = slack.of("chat.update")
    assert [u.body["ts"] for u in updates] == [ts, ts, ts] and all(u.body["channel"] == CHANNEL_ID for u in updates)
    replies = slack.replies[ts]
    assert len(replies) == 3
    assert replies[0].startswith("*new alerts in group*: 2 firing") and "new: QueueLong on b" in replies[0]
    assert replies[1].startswith("*some resolved*: 1 firing, 1 resolved") and "queue=b is resolved" in replies[1]
    assert replies[2].startswith("*repeat elapsed*: 1 firing")
    assert "[FIRING:1] QueueLong" in slack.messages[ts]["text"]  # the message shows the group as it is now

    # all resolved: the message says so; then a new incident later is a new message
    await Stepper(r2, clock, step=30).until(clock.now() + 120, [alert("a", AlertState.RESOLVED)])
    assert len(slack.of("chat.update")) == 4 and slack.replies[ts][-1].startswith("*all resolved*")
    assert slack.messages[ts]["blocks"][0]["text"]["text"].startswith("[RESOLVED]")
    later = clock.now() + 600
    clock.advance(600)
    await Stepper(r2, clock, step=10).until(later + 40, [alert("a", starts_at=later)])
    assert len(slack.posts()) == 2
    new_ts = max(slack.messages)
    entry = await r2.nflog.get("ops", next(iter(r2.groups_by_key)))
    assert entry is not None and entry.refs["slack"]["ts"] == new_ts != ts


async def test_a_deleted_message_is_posted_again_and_its_ref_kept(slack: FakeSlack, store: SqliteStore) -> None:
    clock = VirtualClock(start=T0)
    n = notifier(slack, store, clock)
    run = Stepper(n, clock, step=5)
    await run.until(T0 + 35, [alert("a")])
    (first,) = list(slack.messages)
    slack.delete(first)  # someone deleted it in Slack
    await run.until(T0 + 100, [alert("a"), alert("b")])
    assert slack.of("chat.update")[-1].body["ts"] == first  # tried, answered message_not_found
    assert len(slack.posts()) == 2
    (second,) = list(slack.messages)
    assert "[FIRING:2] QueueLong" in slack.messages[second]["text"]
    entry = await n.nflog.get("ops", next(iter(n.groups_by_key)))
    assert entry is not None and entry.refs["slack"]["ts"] == second
    await run.until(T0 + 160, [alert("a")])  # b gone from the group... a resolved notice updates the new one
    await run.until(T0 + 230, [alert("a"), alert("b", AlertState.RESOLVED)])
    assert slack.of("chat.update")[-1].body["ts"] == second and len(slack.posts()) == 2


async def test_slack_errors_are_retried_and_recorded_and_the_token_is_never_shown(
    slack: FakeSlack, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = VirtualClock(start=T0)
    n = notifier(slack, store, clock, extra="    retry_backoff: 1s", retries=2)
    slack.answers.extend(
        [
            (429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}),
            (200, {"ok": False, "error": f"internal_error echoing Bearer {BOT_TOKEN}"}, {}),
        ]
    )
    n.put([alert("a")])
    clock.advance(31)
    await n.flush_due(wait=False)
    while n._inflight:  # the backoff sleeps on the virtual clock
        await asyncio.sleep(0.01)
        clock.advance(1)
    retries = sorted(await store.history(HistoryQuery(kind="retry")), key=lambda e: e.ts)
    assert [e.detail["attempt"] for e in retries] == [1, 2]
    assert "ratelimited" in retries[0].outcome and retries[0].detail["next_in"] == 7  # Slack's Retry-After
    assert "internal_error" in retries[1].outcome and retries[1].detail["next_in"] == 2
    (sent,) = await store.history(HistoryQuery(kind="sent"))
    assert sent.detail["attempts"] == 3 and len(slack.posts()) == 3 and len(slack.messages) == 1

    # a permanent error: every attempt fails, a dead letter with Slack's error code
    slack.answers.extend([(200, {"ok": False, "error": "channel_not_found"}, {})] * 3)
    n.put([alert("a"), alert("b")])
    clock.advance(60)
    await n.flush_due(wait=False)
    while n._inflight:
        await asyncio.sleep(0.01)
        clock.advance(1)
    (dead,) = await store.history(HistoryQuery(kind="dead_letter"))
    assert "Slack chat.update: channel_not_found" in dead.outcome and n.failed_total == 1

    everything = json.dumps([e.__dict__ for e in await store.history(HistoryQuery())], default=str)
    assert BOT_TOKEN not in everything and "***" in everything
    assert all(BOT_TOKEN not in r.getMessage() for r in caplog.records)
    assert any("internal_error" in r.getMessage() for r in caplog.records)
    status = json.dumps(n.config.model_dump(mode="json"))
    assert BOT_TOKEN not in status  # the config holds ${SLACK_BOT_TOKEN}, not the token
    assert all(c.authorization == f"Bearer {BOT_TOKEN}" for c in slack.calls)


async def test_token_from_a_file_and_the_config_checks(slack: FakeSlack, store: SqliteStore, tmp_path: Path) -> None:
    (tmp_path / "slack-token").write_text(BOT_TOKEN + "\n")
    text = slack_receiver(slack).replace("token: ${SLACK_BOT_TOKEN}", f"token_file: {tmp_path / 'slack-token'}")
    n = Notifier(load_config(text=text), store, VirtualClock(start=T0))
    (result,) = await n.test_send("ops")
    assert result.ok and result.targets == [f"slack_api http://127.0.0.1:{slack.port} #ops"]
    assert len(slack.posts()) == 1
    with pytest.raises(ReceiverError, match=r"token_file .*missing"):
        Notifier(load_config(text=text.replace("slack-token", "missing")), store, VirtualClock(start=T0))
    with pytest.raises(FileError, match="exactly one of token and token_file"):
        load_config(text=text.replace("token_file:", "token: x\n      token_file:"))
    with pytest.raises(FileError, match="not both"):
        load_config(text=text.replace("    retries: 0", '    retries: 0\n    apprise: ["json://localhost"]'))


async def test_any_later_reason_updates_the_message_and_only_a_first_notification_posts(
    slack: FakeSlack, store: SqliteStore
) -> None:
    """Acknowledged, escalated, whatever reason comes later: the incident's message is updated."""
    from alertd.nflog import Entry
    from alertd.notify.render import Message
    from alertd.notify.send import update_for
    from alertd.notify.template import Rendered

    n = notifier(slack, store, VirtualClock(start=T0))
    ops = n.receivers["ops"]
    ref = {"slack": {"channel": CHANNEL_ID, "ts": "1503435956.000247"}}
    entry = Entry("ops", "g", firing=["fp1"], refs=ref)
    message = Message(Rendered("t", "b"), {}, "text", {"reason": "acknowledged"})
    for reason in ("new alerts in group", "some resolved", "repeat elapsed", "acknowledged by alice", "escalated"):
        update = update_for(ops, message, entry, reason)
        assert update is not None and update.refs == ref and update.told == {"fp1"}
    first = update_for(ops, message, entry, "first notification")
    assert first is not None and first.refs == {}
    assert update_for(n.receivers["console"], message, entry, "repeat elapsed") is None  # Apprise: no refs


async def test_a_slow_slack_times_out_and_the_fallback_tells_someone(slack: FakeSlack, store: SqliteStore) -> None:
    slack.delay = 2.0
    clock = VirtualClock(start=T0)
    n = notifier(slack, store, clock, extra="    timeout: 0.2s\n    fallback: console")
    n.put([alert("a")])
    clock.advance(31)
    await n.flush_due()
    (dead,) = await store.history(HistoryQuery(kind="dead_letter"))
    assert dead.outcome == "timed out after 0.2s"
    (fallback,) = await store.history(HistoryQuery(kind="fallback"))
    assert fallback.receiver == "console" and fallback.outcome == "ok" and n.fallback_total == 1
    entry = await n.nflog.get("ops", next(iter(n.groups_by_key)))
    assert entry is not None and entry.via == "console" and entry.refs == {}  # the catch-up posts the message
