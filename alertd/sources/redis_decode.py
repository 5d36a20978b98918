"""kombu's Redis event messages, decoded a read at a time: shared by the event loop's reader and
the decoder process (alertd.sources.decode_process), so both decode and count alike."""

from __future__ import annotations

import binascii
from collections.abc import AsyncIterator
from typing import Any

import orjson

from alertd.sources.resp import PubSubConnection, RespError

HEALTH_CHECK_SECONDS = 5.0


def server_answered(e: BaseException) -> bool:
    """Whether a failed attempt reached a server that answered and refused (AUTH, an unexpected
    reply) - retried after the back-off - rather than the network or a server not (yet) there,
    whose return is probed for. One rule for the loop's reader and the decoder process."""
    return isinstance(e, RespError | ValueError)


def decode_message(data: bytes) -> list[dict[str, Any]]:
    """kombu envelope → Celery event dicts (task.multi bodies hold a list). Raises ValueError."""
    try:
        envelope = orjson.loads(data)
        body = envelope["body"]
        props = envelope.get("properties") or {}
        if props.get("body_encoding") == "base64":
            body = binascii.a2b_base64(body)  # base64.b64decode(body, validate=False) without its wrapper
        ctype = envelope.get("content-type", "application/json")
        if ctype != "application/json":
            raise ValueError(f"events must be JSON (Celery's default event_serializer), got {ctype}")
        payload = orjson.loads(body)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error, AttributeError) as e:
        raise ValueError(f"not a kombu event message: {e}") from None
    if type(payload) is dict:  # what orjson makes: exactly dict and list
        return [payload]
    if type(payload) is list:
        for event in payload:
            if type(event) is not dict:
                break
        else:
            return payload
    raise ValueError("event body is neither an object nor a list of objects")


# (messages read, their events, the malformed ones as (channel, why)); (0, [], []) after a quiet spell
Batch = tuple[int, list[dict[str, Any]], list[tuple[bytes, str]]]


async def read_batches(conn: PubSubConnection) -> AsyncIterator[Batch]:
    """Everything each read brings, decoded; raises ConnectionError when the server stops answering."""
    pinged = False
    while True:
        try:
            # A pub/sub connection is idle whenever nothing happens; a PING after a quiet
            # spell tells an idle server from a dead one (whose TCP connection may linger).
            msgs = await conn.read(HEALTH_CHECK_SECONDS)
        except TimeoutError:
            if pinged:
                raise ConnectionError(f"no answer to PING within {HEALTH_CHECK_SECONDS:g}s") from None
            conn.ping()
            pinged = True
            yield 0, [], []
            continue
        pinged = False
        if not msgs:
            continue
        batch: list[dict[str, Any]] = []
        bad: list[tuple[bytes, str]] = []
        for channel, data in msgs:
            try:
                batch.extend(decode_message(data))
            except ValueError as e:
                bad.append((channel, str(e)))
        yield len(msgs), batch, bad
