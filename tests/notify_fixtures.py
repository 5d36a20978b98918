"""Real endpoints for delivery tests: an aiohttp sink that records what receivers send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import free_port


@dataclass
class Sink:
    """An HTTP server that records every request; `status` and `delay` make it fail or be slow."""

    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0

    def url(self, scheme: str = "json", path: str = "/hook") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.requests.append(
            {"path": request.path, "headers": dict(request.headers), "body": body, "json": _json(body)}
        )
        return web.Response(status=self.status, text="ok" if self.status < 400 else "nope")

    def titles(self) -> list[str]:
        return [r["json"].get("title", "") for r in self.requests if isinstance(r["json"], dict)]


def _json(body: bytes) -> Any:
    import json

    try:
        return json.loads(body)
    except ValueError:
        return None


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink(free_port())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", s.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", s.port).start()
    yield s
    await runner.cleanup()


sink2 = sink
