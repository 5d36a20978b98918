"""Blocking work off the event loop, in a daemon thread of its own.

`asyncio.to_thread` runs it in the loop's default executor, whose threads `asyncio.run` joins at
the end: a stop that lands while a broker sample waits out its inspect broadcasts (a second
each), or while a schedule query hangs on a database, then waits for them, and `alertd run`
took two seconds and more to exit on SIGTERM. A daemon thread is not joined: the process exits
as soon as the loop is done, and whatever the thread was waiting on dies with it (its sockets are
the process's). For work whose result is worthless once alertd stops, and nothing else.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def in_daemon_thread(fn: Callable[[], T], *, name: str) -> T:
    """fn() in a new daemon thread; its result or exception. Cancelling the await abandons it."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, error: BaseException | None) -> None:
        if fut.done():  # cancelled meanwhile
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        try:
            value, error = fn(), None
        except BaseException as e:  # handed to the awaiting task, which decides
            value, error = None, e
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:
            pass  # the loop closed meanwhile: nobody is waiting any more

    threading.Thread(target=work, name=name, daemon=True).start()
    return await fut
