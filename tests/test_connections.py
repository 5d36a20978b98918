"""Slow and half-open clients against a real `alertd run`: a request head must arrive within
api.header_timeout, a body within api.body_timeout, and past api.max_connections new connections
get a 503 at once. Before, 200 sockets with partial headers were all still open after 30 s."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.daemon_fixtures import SILENCE_TOKEN, Api, write_setup

SETTINGS = "header_timeout: 1s, body_timeout: 1s, max_connections: 60"


@pytest.fixture
def api(tmp_path: Path, redis_url: str, unique: str, http_sink: Any, alertd_process: Any) -> Api:
    port = free_port()
    cfg = write_setup(
        tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url=http_sink.url(), port=port,
        keyprefix=f"{unique}:",
    )  # fmt: skip
    cfg.write_text(cfg.read_text().replace("tokens_file: tokens}", f"tokens_file: tokens, {SETTINGS}}}"))
    return alertd_process(cfg, port).api  # type: ignore[no-any-return]


def connect(api: Api, first: bytes = b"") -> socket.socket:
    host, port = api.base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    if first:
        s.sendall(first)
    return s


def closed_by_server(s: socket.socket, within: float) -> bool:
    """Whether the server closes `s` (EOF or reset) within `within` seconds; reads and drops what it sends."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        s.settimeout(left)
        try:
            if s.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def test_connections_that_never_finish_a_request_head_are_closed(api: Api, sockets: list[socket.socket]) -> None:
    sockets += [connect(api) for _ in range(20)]  # nothing at all
    sockets += [connect(api, b"GET /healthz HTTP/1.1\r\nHost: alertd\r\n") for _ in range(20)]  # no end of head
    trickle = connect(api, b"G")
    sockets.append(trickle)
    t0 = time.monotonic()
    for b in b"ET /healthz HTTP/1.1\r\n":  # a byte every 0.1 s: never a whole head within the 1 s
        if time.monotonic() - t0 > 1.5:
            break
        try:
            trickle.sendall(bytes([b]))
        except OSError:
            break
        time.sleep(0.1)
    assert api.get("/healthz", token=None) == "ok\n"  # the server answers meanwhile
    assert all(closed_by_server(s, within=1.5) for s in sockets)
    assert time.monotonic() - t0 < 4
    metrics = api.get("/metrics")
    assert "alertd_api_connections_timed_out_total 41.0" in metrics, metrics


def test_a_body_that_stops_arriving_gets_a_408(api: Api, sockets: list[socket.socket]) -> None:
    head = (
        b"POST /api/v2/silences HTTP/1.1\r\nHost: alertd\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {SILENCE_TOKEN}\r\nContent-Length: 1000\r\n\r\n".encode()
    )
    s = connect(api, head + b'{"matchers": [')
    sockets.append(s)
    s.settimeout(3)
    answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"api.body_timeout" in answer
    assert api.get("/api/v2/silences") == []


def test_past_max_connections_new_ones_get_a_503_at_once(api: Api, sockets: list[socket.socket]) -> None:
    sockets += [connect(api) for _ in range(60)]
    time.sleep(0.1)  # all accepted
    extra = connect(api, b"GET /healthz HTTP/1.1\r\nHost: alertd\r\n\r\n")
    sockets.append(extra)
    extra.settimeout(3)
    answer = extra.recv(4096)
    assert answer.startswith(b"HTTP/1.1 503") and b"too many open connections" in answer, answer
    for s in sockets[:60]:
        s.close()
    time.sleep(0.1)
    assert api.get("/healthz", token=None) == "ok\n"
    assert "alertd_api_connections_refused_total 1.0" in api.get("/metrics")
