"""Entries from RedBeat's keys in Redis: `<prefix>:schedule` lists them, `<prefix><name>` holds each.

Each entry's hash has `definition` (task, schedule, args, kwargs, options, enabled) and `meta`
(last_run_at), both JSON in RedBeat's encoding, read here with RedBeat's own decoder (the
`redbeat` extra). Entries added, edited or disabled through RedBeat are seen at the next reload.
Read-only: alertd never writes these keys. Blocking redis-py: called in a thread.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from alertd.periodic.entries import Entry, beat_args_repr, beat_kwargs_repr
from alertd.periodic.schedules import from_celery


def redbeat_entries(url: str, key_prefix: str, timezone: str) -> tuple[list[Entry], list[str]]:
    """Every entry RedBeat schedules, and a problem line for each it cannot read."""
    import redis
    from redbeat.decoder import RedBeatJSONDecoder

    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)
    try:
        keys = [str(k) for k in client.zrange(f"{key_prefix}:schedule", 0, -1)]
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "definition", "meta")
            rows = pipe.execute()
    finally:
        client.close()
    entries: list[Entry] = []
    problems: list[str] = []
    for key, (definition, meta) in zip(keys, rows, strict=True):
        if not definition:
            continue  # deleted between the two reads
        try:
            d = json.loads(definition, cls=RedBeatJSONDecoder)
            m = json.loads(meta, cls=RedBeatJSONDecoder) if meta else {}
            entries.append(_entry(key.removeprefix(key_prefix), d, m, timezone))
        except (ValueError, TypeError, KeyError) as e:
            problems.append(f"redbeat {key!r}: {e}")
    return entries, problems


def _entry(name: str, d: dict[str, Any], meta: dict[str, Any], timezone: str) -> Entry:
    options = d.get("options") or {}
    last = meta.get("last_run_at")
    return Entry(
        name=str(d.get("name") or name),
        task=str(d["task"]),
        schedule=from_celery(d["schedule"], timezone),
        args_repr=beat_args_repr(d.get("args")),
        kwargs_repr=beat_kwargs_repr(d.get("kwargs")),
        queue=str(options.get("queue") or "") if isinstance(options, dict) else "",
        enabled=bool(d.get("enabled", True)),
        source="redbeat",
        last_run_at=last.timestamp() if isinstance(last, datetime) else None,
    )
