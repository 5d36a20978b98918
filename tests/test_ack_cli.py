"""`alertd ack` in a subprocess against the real API: list the groups, ack one, see its pages
stop, list the acks; the read role is refused."""

from __future__ import annotations

import json

from tests.api_fixtures import READ_TOKEN, ThreadedHarness, threaded_api_fixture  # noqa: F401
from tests.test_silence_cli import cli, fire, pages

GROUP = "root{}{alertname='TaskFailed'}"


def test_ack_a_group_from_the_cli_and_its_pages_stop(threaded_api: ThreadedHarness) -> None:
    t = threaded_api
    t.run(fire(t.h))
    t.run(t.h.step(1))
    assert pages(t) == 1
    groups = cli(t, "ack", token=READ_TOKEN)
    assert groups.returncode == 0 and GROUP in groups.stdout, groups.stderr
    refused = cli(t, "ack", GROUP, "-m", "on it", token=READ_TOKEN)
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr
    done = cli(t, "ack", GROUP, "-m", "on it", "--for", "4h", "-o", "json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["acked_by"] == "ops" and out["comment"] == "on it" and out["group"] == GROUP
    t.run(t.h.daemon.acking.settle())
    assert pages(t) == 2  # the receiver hears it was acked, once
    for _ in range(8):
        t.h.fail_task()
        t.run(t.h.step(1))
    assert pages(t) == 2  # repeat_interval 3 s: acked, nothing repeats
    listed = cli(t, "ack", "--list", token=READ_TOKEN)
    assert listed.returncode == 0 and out["id"] in listed.stdout and "on it" in listed.stdout
    by_fp = cli(t, "ack", "0123456789abcdef")  # a fingerprint of nothing firing
    assert by_fp.returncode == 1 and "nothing to acknowledge" in by_fp.stderr
