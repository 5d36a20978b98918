"""Basic auth against a real `alertd run`: the PBKDF2 check (200 k rounds, as `alertd token
add-user` writes it) runs off the event loop, costs an unknown user what it costs a known one, and
a client that keeps failing is refused for a while.

Clients come from distinct loopback addresses (127.0.0.2, .3, ...), so each is its own client to
alertd's per-client failure limit, as separate machines would be.
"""

from __future__ import annotations

import base64
import http.client
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alertd.auth import Auth, AuthError, Logins, hash_password
from tests.conftest import free_port
from tests.daemon_fixtures import READ_TOKEN, DaemonProcess, write_setup
from tests.test_redos import Probe, assert_responsive

USER, PASSWORD = "grafana", "correct horse battery staple"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def get(port: int, path: str, auth: str | None, source: str = "127.0.0.1") -> tuple[int, dict[str, str], float]:
    """(status, headers, seconds) of one GET on a fresh connection from `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    t0 = time.perf_counter()
    try:
        conn.request("GET", path, headers={"Authorization": auth} if auth else {})
        r = conn.getresponse()
        r.read()
        return r.status, dict(r.getheaders()), time.perf_counter() - t0
    finally:
        conn.close()


def get_text(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {READ_TOKEN}"})
        return conn.getresponse().read().decode()
    finally:
        conn.close()


@pytest.fixture
def start_alertd(tmp_path: Path, redis_url: str, unique: str, http_sink: Any) -> Iterator[Callable[..., int]]:
    """Call with the api settings to add; starts `alertd run` with a users file; returns its port."""
    started: list[DaemonProcess] = []

    def start(api_extra: str) -> int:
        port = free_port()
        cfg = write_setup(
            tmp_path, broker=redis_url, store="sqlite:///state.db", sink_url=http_sink.url(), port=port,
            keyprefix=f"{unique}:",
        )  # fmt: skip
        (tmp_path / "users").write_text(f"{USER} read {hash_password(PASSWORD)}\n")  # 200 k rounds, the default
        cfg.write_text(
            cfg.read_text().replace(
                "tokens_file: tokens}", f"tokens_file: tokens, basic_auth_file: users, {api_extra}}}"
            )
        )
        started.append(DaemonProcess(cfg, port, tmp_path / "alertd.log").start())
        return port

    yield start
    for d in started:
        d.kill()


def test_healthz_stays_fast_while_8_clients_send_wrong_passwords(start_alertd: Callable[..., int]) -> None:
    port = start_alertd("max_login_failures: 1000000")  # no lockout: the thread pool is what is tested
    assert get(port, "/api/v2/status", basic(USER, PASSWORD))[0] == 200
    stop = threading.Event()
    statuses: list[int] = []

    def attack(n: int) -> None:
        while not stop.is_set():
            statuses.append(get(port, "/api/v2/status", basic(USER, f"wrong-{n}"), source=f"127.0.0.{n + 2}")[0])

    attackers = [threading.Thread(target=attack, args=(n,), daemon=True) for n in range(8)]
    probe = Probe(f"http://127.0.0.1:{port}")
    for t in attackers:
        t.start()
    time.sleep(0.3)  # let the attack fill the queue before the probe starts
    probe.start()
    time.sleep(3)
    latencies = probe.stop()
    stop.set()
    for t in attackers:
        t.join(15)
    p50, worst = latencies[len(latencies) // 2], latencies[-1]
    print(
        f"/healthz under 8 wrong-password clients: n={len(latencies)} p50={p50 * 1000:.1f} ms max={worst * 1000:.1f} ms"
    )
    print(f"attack answers: {len(statuses)}, {sorted(set(statuses))}")
    assert set(statuses) <= {401, 503} and 401 in statuses
    assert_responsive(probe, latencies)


def test_an_unknown_user_takes_as_long_as_a_known_one(start_alertd: Callable[..., int]) -> None:
    port = start_alertd("max_login_failures: 1000000")
    known, unknown = [], []
    for _ in range(8):  # interleaved, so load on the machine weighs on both alike
        known.append(get(port, "/api/v2/status", basic(USER, "wrong"))[2])
        unknown.append(get(port, "/api/v2/status", basic("no-such-user", "wrong"))[2])
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"wrong password: known user {k * 1000:.1f} ms, unknown user {u * 1000:.1f} ms (medians of 8)")
    assert k > 0.005, "a 200 k-round PBKDF2 check should take milliseconds"
    assert abs(k - u) < 0.25 * k, (k, u)


def test_a_client_that_keeps_failing_is_refused_for_the_window_and_others_are_not(
    start_alertd: Callable[..., int],
) -> None:
    port = start_alertd("max_login_failures: 3, login_failure_window: 2s")
    for _ in range(3):
        assert get(port, "/api/v2/status", basic(USER, "wrong"), source="127.0.0.7")[0] == 401
    status, headers, took = get(port, "/api/v2/status", basic(USER, PASSWORD), source="127.0.0.7")
    assert status == 429 and 1 <= int(headers["Retry-After"]) <= 2
    assert took < 0.02  # refused without a password hash
    # another client, and bearer tokens from the same one, are unaffected
    assert get(port, "/api/v2/status", basic(USER, PASSWORD), source="127.0.0.8")[0] == 200
    assert get(port, "/api/v2/status", f"Bearer {READ_TOKEN}", source="127.0.0.7")[0] == 200
    metrics = get_text(port, "/metrics")
    assert 'alertd_api_logins_refused_total{reason="locked"} 1.0' in metrics
    time.sleep(2.1)  # the window passes
    assert get(port, "/api/v2/status", basic(USER, PASSWORD), source="127.0.0.7")[0] == 200


async def test_without_a_users_file_basic_credentials_cost_no_hash() -> None:
    logins = Logins()
    try:
        t0 = time.perf_counter()
        with pytest.raises(AuthError) as e:
            await Auth({}, {}).verify(basic(USER, PASSWORD), logins, "127.0.0.9")
        assert e.value.status == 401 and time.perf_counter() - t0 < 0.005
        assert logins._pool is None  # never started: nothing was hashed
    finally:
        logins.close()
