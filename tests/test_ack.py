"""Acknowledgement (issue 15): an ack is a silence bound to the alerts firing when it was made; it
mutes only them, ends by itself when they resolve, and can be made by API, CLI, page and link."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from alertd.ack.links import LinkRefused, sign, verify
from alertd.alert import fingerprint
from alertd.clock import VirtualClock
from alertd.matchers import parse_matcher
from alertd.silence.silences import ACK, ACK_FINGERPRINTS, SilenceError, Silences
from alertd.store.open import open_store
from tests.api_fixtures import (
    READ_TOKEN,
    SILENCE_TOKEN,
    Harness,
    start_harness,
    write_config,
)
from tests.notify_fixtures import Sink
from tests.waiting import T0

SECRET = b"k" * 32
CHARGE = {"alertname": "TaskFailed", "severity": "critical", "task": "billing.charge"}
REFUND = {**CHARGE, "task": "billing.refund"}
GROUP = "root{}{alertname='TaskFailed'}"  # the default route's, group_by [alertname]
EXTERNAL = "https://alertd.example"


# -- the token -----------------------------------------------------------------------------


def q(query: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(query))


def test_a_link_token_verifies_for_its_action_group_and_time_only() -> None:
    link = q(sign(SECRET, "ack", "g1", T0 + 60))
    assert verify(SECRET, "ack", link, T0).group == "g1"
    with pytest.raises(LinkRefused):
        verify(SECRET, "ack", link, T0 + 60)  # expired
    with pytest.raises(LinkRefused):
        verify(SECRET, "silence", link, T0)  # another action
    with pytest.raises(LinkRefused):
        verify(SECRET, "ack", {**link, "g": "g2"}, T0)  # another group
    with pytest.raises(LinkRefused):
        verify(SECRET, "ack", {**link, "e": str(int(T0) + 10**6)}, T0)  # a longer life
    with pytest.raises(LinkRefused):
        verify(b"other" * 8, "ack", link, T0)  # another secret: forged
    with pytest.raises(LinkRefused):
        verify(None, "ack", link, T0)  # no secret (yet): nothing is accepted
    for broken in ({}, {**link, "e": "soon"}, {**link, "s": ""}):
        with pytest.raises(LinkRefused):
            verify(SECRET, "ack", broken, T0)


# -- the mute ------------------------------------------------------------------------------


async def test_an_ack_mutes_only_its_fingerprints(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    silences = Silences(store, VirtualClock(start=T0))
    await silences.load()
    matchers = [parse_matcher('alertname="TaskFailed"')]
    sid = await silences.upsert(
        matchers,
        T0,
        T0 + 3600,
        created_by="ana",
        comment="ACK: on it",
        author="ana",
        annotations={ACK: "true", ACK_FINGERPRINTS: fingerprint(CHARGE)},
    )
    assert silences.mutes(CHARGE, T0 + 1) == [sid]
    assert silences.mutes(REFUND, T0 + 1) == []  # matches the matchers, but is news
    again = Silences(store, VirtualClock(start=T0))  # as stored, as another replica reads it
    await again.load()
    assert again.mutes(CHARGE, T0 + 1) == [sid] and again.mutes(REFUND, T0 + 1) == []
    await store.close()


# -- the daemon: API, resolve, new episodes ------------------------------------------------


def pages(sink: Sink) -> list[dict[str, Any]]:
    return [r["json"] for r in sink.requests if r["path"].startswith("/hook")]


def with_external_url(cfg: Path) -> Path:
    cfg.write_text(cfg.read_text().replace("api: {", f'api: {{external_url: "{EXTERNAL}", ', 1))
    return cfg


@pytest.fixture(name="acking")
async def acking_fixture(tmp_path: Path, sink: Sink) -> AsyncIterator[Harness]:
    cfg = with_external_url(write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink))
    async for h in start_harness(cfg):
        yield h


async def paged(h: Harness, sink: Sink, task: str = "billing.charge") -> int:
    """A task fails; its group's page goes out (group_wait 1 s, or the group's next flush at
    group_interval 2 s). Returns the pages so far."""
    before = len(pages(sink))
    h.fail_task(task)
    await h.step(0.1)
    for _ in range(2):
        await h.step(1)
        if len(pages(sink)) > before:
            break
    assert len(pages(sink)) == before + 1, pages(sink)
    return len(pages(sink))


async def told_acked(h: Harness, sink: Sink, n: int, by: str) -> int:
    """The receiver told of the firing alerts hears once that they were acked; returns the pages so far."""
    await h.daemon.acking.settle()
    assert len(pages(sink)) == n + 1, pages(sink)
    assert pages(sink)[-1]["message"].startswith(f"(acknowledged by {by}")
    return n + 1


async def v2_silence(h: Harness, sid: str) -> dict[str, Any]:
    return next(s for s in await h.get("/api/v2/silences") if s["id"] == sid)


async def test_an_api_ack_mutes_the_group_until_it_resolves_then_the_next_failure_pages(
    acking: Harness, sink: Sink
) -> None:
    h = acking
    n = await paged(h, sink)
    [group] = await h.get("/api/alertd/v1/groups")
    assert (group["key"], group["firing"], group["acked"]) == (GROUP, [fingerprint(CHARGE)], {})
    r = await h.call("POST", "/api/alertd/v1/acks", {"group": GROUP, "comment": "on it"}, token=READ_TOKEN)
    assert r.status == 403  # a write: the read role may not
    r = await h.call("POST", "/api/alertd/v1/acks", {"group": GROUP, "comment": "on it"}, token=SILENCE_TOKEN)
    assert r.status == 201, r.text
    ack = r.body
    assert ack["acked_by"] == "ops" and ack["comment"] == "on it" and ack["fingerprints"] == [fingerprint(CHARGE)]
    assert ack["group"] == GROUP and ack["state"] == "active"
    # as Alertmanager's tools see it: a silence on the group's labels, recognisably an ack
    s = await v2_silence(h, ack["id"])
    assert s["comment"] == "ACK: on it" and s["createdBy"] == "ops"
    assert s["annotations"] == {ACK: "true", ACK_FINGERPRINTS: fingerprint(CHARGE), "alertd.ack.group": GROUP}
    assert [(m["name"], m["value"], m["isEqual"]) for m in s["matchers"]] == [("alertname", "TaskFailed", True)]
    # a week at most, unless resolved sooner
    assert ack["ends_at"] == pytest.approx(h.clock.now() + 7 * 86400)
    n = await told_acked(h, sink, n, "ops: on it")
    assert "billing.charge failed" in pages(sink)[-1]["message"]

    for _ in range(10):  # repeat_interval 3 s: acked, nothing repeats
        h.fail_task()  # still failing: still the same alert, still acked
        await h.step(1)
    assert len(pages(sink)) == n
    listed = (await h.get("/api/alertd/v1/acks"))["acks"]
    assert [a["id"] for a in listed] == [ack["id"]] and listed[0]["age_seconds"] == pytest.approx(10, abs=0.5)
    assert (await h.get("/api/alertd/v1/groups"))[0]["acked"] == {fingerprint(CHARGE): ack["id"]}

    # a new alert in the same group was not acked: it pages
    n = await paged(h, sink, "billing.refund")
    assert [a["labels"]["task"] for a in (await h.get("/api/v2/alerts", params={"silenced": "false"}))] == [
        "billing.refund"
    ]

    # charge resolves (resolve_after 10m): its ack ends by itself, expired as amtool sees it
    for _ in range(7):
        h.fail_task("billing.refund")  # refund keeps failing; charge has not failed since the ack
        await h.step(100)
    assert (await v2_silence(h, ack["id"]))["status"]["state"] == "expired"
    ended = (await h.get("/api/alertd/v1/acks"))["acks"][0]
    assert ended["state"] == "expired" and ended["ended"] == "resolved"
    assert (await h.get("/api/alertd/v1/acks", params={"expired": "false"}))["acks"] == []

    # charge fails again: a new episode, and it pages
    before = len(pages(sink))
    h.fail_task()
    await h.step(0.1)
    for _ in range(3):
        await h.step(1)
    assert len(pages(sink)) > before
    assert "billing.charge" in str(pages(sink)[before:])


async def test_an_ack_needs_something_firing(acking: Harness, sink: Sink) -> None:
    r = await acking.call("POST", "/api/alertd/v1/acks", {"group": GROUP}, token=SILENCE_TOKEN)
    assert r.status == 400 and "no group" in r.body["error"]
    r = await acking.call("POST", "/api/alertd/v1/acks", {"fingerprints": ["0" * 16]}, token=SILENCE_TOKEN)
    assert r.status == 400 and "nothing to acknowledge" in r.body["error"]
    r = await acking.call("POST", "/api/alertd/v1/acks", {"comment": "x"}, token=SILENCE_TOKEN)
    assert r.status == 400
    assert acking.daemon.silences.query() == []


async def test_an_ack_by_fingerprint_with_a_deadline(acking: Harness, sink: Sink) -> None:
    h = acking
    n = await paged(h, sink)
    r = await h.call(
        "POST", "/api/alertd/v1/acks", {"fingerprints": [fingerprint(CHARGE)], "for": "30s"}, token=SILENCE_TOKEN
    )
    assert r.status == 201, r.text
    assert r.body["ends_at"] == pytest.approx(h.clock.now() + 30) and r.body["group"] == ""
    n = await told_acked(h, sink, n, "ops")
    for _ in range(20):
        h.fail_task()
        await h.step(1)
    assert len(pages(sink)) == n
    for _ in range(15):
        h.fail_task()
        await h.step(1)
    assert len(pages(sink)) > n  # the deadline passed while still failing: it pages again
    assert (await h.get("/api/alertd/v1/acks"))["acks"][0]["ended"] == "deadline"


async def test_a_restarted_daemon_keeps_an_ack_whose_alerts_it_restored(tmp_path: Path, sink: Sink) -> None:
    """The engine holds restored alerts firing until their data is back: no early end of the ack."""
    cfg = with_external_url(write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink))
    async for h in start_harness(cfg, start=T0):
        await paged(h, sink)
        r = await h.call("POST", "/api/alertd/v1/acks", {"group": GROUP}, token=SILENCE_TOKEN)
        ack_id = r.body["id"]
        await h.step(1)
    async for h in start_harness(cfg, start=T0 + 5):  # the same store, a new process
        for _ in range(5):
            await h.step(1)
        assert (await h.get("/api/alertd/v1/acks"))["acks"][0]["state"] == "active"
        assert h.daemon.acks.active_by_fingerprint()[fingerprint(CHARGE)].id == ack_id


async def test_an_ack_whose_alerts_this_process_never_saw_is_kept_until_they_fire_anew(
    tmp_path: Path, sink: Sink
) -> None:
    """A daemon started without the saved alert state (absent is not resolved) keeps the ack,
    until the alert fires again: a new episode, which pages."""
    cfg = with_external_url(write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink))
    async for h in start_harness(cfg, start=T0):
        await paged(h, sink)
        await h.call("POST", "/api/alertd/v1/acks", {"group": GROUP}, token=SILENCE_TOKEN)
        await h.daemon.store.delete("rule_state", "engine")
        h.daemon._store_open = False  # stop() must not save the engine's state again
    async for h in start_harness(cfg, start=T0 + 5):
        for _ in range(5):
            await h.step(1)
        assert (await h.get("/api/alertd/v1/acks"))["acks"][0]["state"] == "active"
        # the task fails again: an episode that started after the ack is news, and pages
        n = await paged(h, sink)
        assert (await h.get("/api/alertd/v1/acks"))["acks"][0]["ended"] == "resolved"
        assert n == 3  # the first page, the acknowledged notice, this one


async def test_a_group_of_thousands_is_one_ack_and_an_update_without_annotations_keeps_it(tmp_path: Path) -> None:
    # One fingerprint per alert in the ack's annotations: 2,500 alerts (two rules of 1,000
    # series and more in one route's group) are ~42 KB, past silences.max_silence_bytes (32 KiB),
    # which bounds what a client writes, not what alertd writes for it.
    from alertd.ack.book import Acks
    from alertd.alert import Alert, AlertState
    from alertd.config.settings import SilencesConfig

    store = open_store(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    clock = VirtualClock(start=T0)
    silences = Silences(store, clock, max_silence_bytes=SilencesConfig().max_silence_bytes)
    await silences.load()
    alerts = [
        Alert(labels={"alertname": "TaskFailed", "task": f"flood.t{i}"}, starts_at=T0, state=AlertState.FIRING)
        for i in range(2500)
    ]
    ack = await Acks(silences, clock).ack(alerts, group=GROUP, group_labels={"alertname": "TaskFailed"}, by="ana")
    assert len(ack.fingerprints) == 2500
    s = silences.get(ack.id)
    # an update as amtool posts one (no annotations): still the ack, its size not the client's
    sid = await silences.upsert(
        s.matchers, s.starts_at, s.ends_at, created_by="ana", comment="ACK: still", author="ana", silence_id=s.id
    )
    [again] = [a for a in Acks(silences, clock).all() if a.id == sid]
    assert len(again.fingerprints) == 2500 and again.comment == "still"
    with pytest.raises(SilenceError, match="max_silence_bytes"):  # a client's own annotations that size
        await silences.upsert(
            s.matchers, T0, T0 + 60, created_by="x", comment="x", author="x", annotations={"note": "x" * 40_000}
        )
    await store.close()


# -- signed links --------------------------------------------------------------------------


def links_of(page: dict[str, Any]) -> tuple[str, str]:
    text = page["message"]
    ack = re.search(rf"{re.escape(EXTERNAL)}/link/ack\?\S+", text)
    silence = re.search(rf"{re.escape(EXTERNAL)}/link/silence\?\S+", text)
    assert ack and silence, text
    return ack.group(0), silence.group(0)


def local(h: Harness, url: str) -> str:
    return url.removeprefix(EXTERNAL)


async def test_a_notifications_ack_link_shows_a_page_then_its_post_acks(acking: Harness, sink: Sink) -> None:
    h = acking
    await paged(h, sink)
    ack_url, _ = links_of(pages(sink)[-1])
    r = await h.call("GET", local(h, ack_url), token=None)  # an unfurler's GET: a page, nothing done
    assert r.status == 200 and "<form method='post'>" in r.text and "billing.charge failed" in r.text
    assert h.daemon.silences.query() == []
    n = len(pages(sink))
    r = await h.call("POST", local(h, ack_url), "by=ana", token=None, headers=FORM)
    assert r.status == 200 and "acknowledged by ana (link)" in r.text, r.text
    n = await told_acked(h, sink, n, "ana (link)")
    acks = (await h.get("/api/alertd/v1/acks"))["acks"]
    assert [(a["acked_by"], a["group"], a["fingerprints"]) for a in acks] == [
        ("ana (link)", GROUP, [fingerprint(CHARGE)])
    ]
    r = await h.call("POST", local(h, ack_url), "", token=None, headers=FORM)  # a second click: one ack
    assert r.status == 200 and len(h.daemon.silences.query()) == 1
    await h.daemon.acking.settle()
    assert len(pages(sink)) == n  # and one notice
    for _ in range(10):
        h.fail_task()
        await h.step(1)
    assert len(pages(sink)) == n


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_forged_expired_and_other_group_links_are_refused_and_change_nothing(acking: Harness, sink: Sink) -> None:
    h = acking
    await paged(h, sink)
    ack_url, silence_url = links_of(pages(sink)[-1])
    parts = urllib.parse.urlsplit(ack_url)
    query = q(parts.query)
    other_group = urllib.parse.urlencode({**query, "g": "{}:{alertname='Other'}"})
    longer = urllib.parse.urlencode({**query, "e": str(int(query["e"]) + 86400)})
    forged = urllib.parse.urlencode({**query, "s": "0" * 64})
    as_silence = "/link/silence?" + parts.query  # an ack link's signature for the other action
    for path in (f"/link/ack?{other_group}", f"/link/ack?{longer}", f"/link/ack?{forged}", as_silence, "/link/ack"):
        for method in ("GET", "POST"):
            r = await h.call(method, path, "by=mallory", token=None, headers=FORM)
            assert r.status == 403, (path, method, r.status)
            assert "Nothing was changed" in r.text
    h.clock.advance(86400 + 1)  # past the links' life (acks.link_ttl, a day)
    for url in (ack_url, silence_url):
        r = await h.call("POST", local(h, url), "", token=None, headers=FORM)
        assert r.status == 403
    assert h.daemon.silences.query() == []


async def test_a_notifications_silence_link_silences_the_group_for_two_hours(acking: Harness, sink: Sink) -> None:
    h = acking
    n = await paged(h, sink)
    _, silence_url = links_of(pages(sink)[-1])
    r = await h.call("POST", local(h, silence_url), "", token=None, headers=FORM)
    assert r.status == 200 and "silenced until" in r.text
    [s] = h.daemon.silences.query()
    assert s.bound is None and s.ends_at == pytest.approx(h.clock.now() + 7200)
    assert [str(m) for m in s.matchers] == ['alertname="TaskFailed"']
    h.fail_task("billing.refund")  # a silence, unlike an ack, covers new alerts of the group too
    for _ in range(5):
        await h.step(1)
    assert len(pages(sink)) == n


async def test_no_links_without_an_external_url(tmp_path: Path, sink: Sink) -> None:
    async for h in start_harness(write_config(tmp_path, store=f"sqlite:///{tmp_path}/state.db", sink=sink)):
        await paged(h, sink)
        assert "/link/" not in pages(sink)[-1]["message"]
        assert "Acknowledge" not in pages(sink)[-1]["message"]


async def test_replicas_on_one_store_share_the_link_secret(tmp_path: Path, redis_url: str, unique: str) -> None:
    from alertd.ack.links import LinkSigner

    store_a, store_b = (open_store(f"{redis_url}?prefix=alertd-ack-{unique}:") for _ in range(2))
    await store_a.open()
    await store_b.open()
    a, b = LinkSigner(lambda: EXTERNAL, lambda: 60.0), LinkSigner(lambda: EXTERNAL, lambda: 60.0)
    await a.load(store_a, "a", T0)
    await b.load(store_b, "b", T0)
    assert a.secret is not None and a.secret == b.secret
    link = a.url("ack", GROUP, T0)
    verify(b.secret, "ack", q(urllib.parse.urlsplit(link).query), T0 + 1)
    await store_a.close()
    await store_b.close()


async def test_replicas_sharing_a_redis_store_end_an_ack_once(
    tmp_path: Path, sink: Sink, redis_url: str, unique: str
) -> None:
    store = f"{redis_url}?prefix=alertd-ack-{unique}:"
    cfg_a = with_external_url(write_config(_mkdir(tmp_path / "a"), store=store, sink=sink))
    cfg_b = with_external_url(write_config(_mkdir(tmp_path / "b"), store=store, sink=sink))
    gen_a, gen_b = start_harness(cfg_a, start=T0), start_harness(cfg_b, start=T0)
    a, b = await gen_a.__anext__(), await gen_b.__anext__()
    try:
        for h in (a, b):  # both replicas evaluate the same events
            h.fail_task()
            await h.step(0.1)
        r = await a.call("POST", "/api/alertd/v1/acks", {"group": GROUP}, token=SILENCE_TOKEN)
        assert r.status == 201
        await b.daemon.silences.refresh()
        assert b.daemon.acks.active_by_fingerprint()[fingerprint(CHARGE)].id == r.body["id"]
        for h in (a, b):
            await h.step(601)  # resolve_after 10m
        for h in (a, b):
            await h.step(1)
        ended = [
            e for e in await a.get("/api/alertd/v1/history", params={"kind": "api"}) if e["reason"] == "silence expired"
        ]
        assert [e["author"] for e in ended] == ["alertd (acked alerts resolved)"]
        assert (await b.get("/api/alertd/v1/acks"))["acks"][0]["ended"] == "resolved"
    finally:
        await gen_a.aclose()
        await gen_b.aclose()


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


async def test_an_ack_before_the_first_page_sends_nothing(acking: Harness, sink: Sink) -> None:
    """Acked within group_wait: the receiver never heard of it, so neither page nor notice."""
    h = acking
    h.fail_task()
    await h.step(0.1)
    r = await h.call("POST", "/api/alertd/v1/acks", {"fingerprints": [fingerprint(CHARGE)]}, token=SILENCE_TOKEN)
    assert r.status == 201, r.text
    await h.daemon.acking.settle()
    for _ in range(5):
        h.fail_task()
        await h.step(1)
    assert pages(sink) == []
    kinds = {e["kind"] for e in await h.get("/api/alertd/v1/history")}
    assert "acknowledged" not in kinds and "silenced" in kinds


async def test_an_ack_expired_by_hand_says_so(acking: Harness, sink: Sink) -> None:
    h = acking
    await paged(h, sink)
    r = await h.call("POST", "/api/alertd/v1/acks", {"group": GROUP}, token=SILENCE_TOKEN)
    assert (await h.call("DELETE", f"/api/v2/silence/{r.body['id']}", token=SILENCE_TOKEN)).status == 200
    assert [(a["state"], a["ended"]) for a in (await h.get("/api/alertd/v1/acks"))["acks"]] == [("expired", "expired")]


@pytest.mark.parametrize("template", ["slack", "email", "generic", "json", "pagerduty"])
def test_the_built_in_templates_show_the_links_only_when_there_are_some(template: str) -> None:
    from alertd.alert import Alert
    from alertd.notify.template import Templates, build_context

    alert = Alert(labels=CHARGE, annotations={"summary": "billing.charge failed"}, starts_at=T0)
    ctx = build_context(
        receiver="hook",
        group_key=GROUP,
        group_labels={"alertname": "TaskFailed"},
        firing=[alert],
        resolved=[],
        reason="first notification",
        external_url=EXTERNAL,
        now=T0 + 60,
    )
    templates = Templates(None, None)
    bare = templates.render(template, {**ctx, "ack_url": "", "silence_url": ""})
    links = {"ack_url": f"{EXTERNAL}/link/ack?g=x&e=1&s=ab", "silence_url": f"{EXTERNAL}/link/silence?g=x&e=1&s=cd"}
    shown = templates.render(template, {**ctx, **links})
    for r in (bare, shown):
        assert "Acknowledge" not in r.title
    assert "/link/" not in bare.body + (bare.html or "")
    if template in ("slack", "email", "generic"):
        text = shown.body + (shown.html or "")
        assert "/link/ack?" in text and "/link/silence?" in text and "Acknowledge" in text
    else:  # a program's JSON and PagerDuty's summary stay as they were
        assert (shown.title, shown.body) == (bare.title, bare.body)


async def test_the_link_secret_comes_from_the_file_else_the_environment_else_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alertd.ack.links import ENV, LinkSigner

    (tmp_path / "secret").write_text("from-the-file\n")
    monkeypatch.setenv(ENV, "from-the-environment")
    assert LinkSigner(lambda: EXTERNAL, lambda: 60.0, secret_file=tmp_path / "secret").secret == b"from-the-file"
    assert LinkSigner(lambda: EXTERNAL, lambda: 60.0).secret == b"from-the-environment"
    monkeypatch.delenv(ENV)
    signer = LinkSigner(lambda: EXTERNAL, lambda: 60.0)
    assert signer.secret is None and signer.url("ack", GROUP, T0) == ""  # no key yet: no links
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    await store.open()
    await signer.load(store, "r1", T0)
    again = LinkSigner(lambda: EXTERNAL, lambda: 60.0)
    await again.load(store, "r2", T0)
    assert signer.secret is not None and len(signer.secret) == 64 and again.secret == signer.secret
    await store.close()
