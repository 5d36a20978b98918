"""A reload of alertd.yaml: what takes effect at once and what waits for a restart (named)."""

from __future__ import annotations

from alertd.config import load_config
from alertd.config.reload import merge_reload

RUNNING = """
broker: redis://localhost:6379/0
store: sqlite:///state.db
api: {listen: 127.0.0.1:9093, tokens_file: tokens, external_url: http://old}
observe: {max_tasks: 1000}
receivers: [{name: team, apprise: ["json://127.0.0.1:1/a"]}]
route: {receiver: team, group_wait: 30s}
"""


def test_routing_tokens_and_links_reload_at_once_the_rest_waits_and_is_named() -> None:
    running = load_config(text=RUNNING)
    fresh = load_config(
        text=RUNNING.replace("redis://localhost:6379/0", "redis://other:6379/1")
        .replace("tokens_file: tokens", "tokens_file: tokens2")
        .replace("http://old", "http://new")
        .replace("127.0.0.1:9093", "0.0.0.0:9093")
        .replace("max_tasks: 1000", "max_tasks: 2000")
        .replace("group_wait: 30s", "group_wait: 5s")
        .replace("/a", "/b")
    )
    effective, later = merge_reload(running, fresh)
    assert effective.route is not None and effective.route.group_wait == 5.0
    assert effective.receivers[0].apprise == ["json://127.0.0.1:1/b"]
    assert effective.api.tokens_file == "tokens2" and effective.api.external_url == "http://new"
    assert effective.broker == "redis://localhost:6379/0"  # still connected to the old one
    assert effective.api.listen == "127.0.0.1:9093" and effective.observe.max_tasks == 1000
    assert later == ["api.listen", "broker", "observe.max_tasks"]


def test_an_unchanged_file_reloads_with_nothing_waiting() -> None:
    running = load_config(text=RUNNING)
    effective, later = merge_reload(running, load_config(text=RUNNING))
    assert later == [] and effective.model_dump() == running.model_dump()
