"""Time in tests, once: the virtual epoch, and waiting for a condition (sync and async)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC, a Tuesday: the virtual clocks' start


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition", interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll `predicate` until truthy (and return it); fail the test naming `what` if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def wait_for(
    predicate: Callable[[], object], timeout: float = 20.0, what: str = "condition", interval: float = 0.05
) -> Any:
    """The same without blocking the event loop (the sources and servers under test run on it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
