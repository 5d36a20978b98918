"""Backing off from an unreachable broker without staying blind once it is back.

A reconnect backoff that doubles up to `reconnect_max` (30 s) spares a broker that refuses us, but
after an outage it would keep alertd blind for up to that long once the broker is back. While the
broker is unreachable (nothing listens), a bare connect to its port every PROBE_INTERVAL notices
its return and ends the wait; a broker that answers and refuses (a wrong password) gets the plain
backoff, since probing it would only hammer it.
"""

from __future__ import annotations

import asyncio
import contextlib

from alertd.clock import Clock

PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 1.0


async def port_open(host: str, port: int, path: str | None = None) -> bool:
    """Whether something accepts a connection there (a TCP port, or a unix socket `path`)."""
    try:
        opening = asyncio.open_unix_connection(path) if path else asyncio.open_connection(host, port)
        _reader, writer = await asyncio.wait_for(opening, PROBE_TIMEOUT)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), PROBE_TIMEOUT)
    return True


async def back_off(clock: Clock, seconds: float, probe: tuple[str, int, str | None] | None) -> None:
    """Sleep `seconds` on `clock`; with a `probe` (host, port, unix path), stop once it answers."""
    if probe is None or seconds <= PROBE_INTERVAL:
        await clock.sleep(seconds)
        return
    deadline = clock.now() + seconds
    while (left := deadline - clock.now()) > 0:
        await clock.sleep(min(PROBE_INTERVAL, left))
        if await port_open(*probe):
            return
