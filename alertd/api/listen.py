"""The API's listening socket: a cap on open connections and a deadline for each request head.

aiohttp closes a kept-alive connection that sits idle (its keepalive_timeout, which alertd sets to
`api.header_timeout`), but a connection that never completes its first request head, a client
sending headers a byte at a time or not at all, is held open by it (before aiohttp 3.14, forever):
200 such sockets pin 200 file descriptors. Each connection here gets a stand-in protocol in
front of aiohttp's that closes it when the first head has not arrived within `header_timeout`,
and refuses connections past `max_connections` with a 503 before aiohttp sees them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_BUSY_BODY = b'{"error": "too many open connections; retry soon"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class ApiSite(web.BaseSite):
    """A TCP site whose connections are counted and held to a deadline for their first request head."""

    __slots__ = ("_host", "_port", "header_timeout", "max_connections", "open", "refused", "timed_out")

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int, header_timeout: float
    ) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.open = 0
        self.refused = 0  # connections turned away at the cap
        self.timed_out = 0  # connections closed for a late first request head

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self, server), self._host, self._port, backlog=self._backlog
        )

    def bound(self) -> str:
        """host:port actually listened on (port 0 in the config picks a free one)."""
        sockets = getattr(self._server, "sockets", None) or []
        if not sockets:
            return f"{self._host}:{self._port}"
        host, port = sockets[0].getsockname()[:2]
        return f"{host}:{port}"


class _Connection(asyncio.Protocol):
    """Stands in front of aiohttp's protocol for one connection, passing every call through."""

    def __init__(self, site: ApiSite, make_inner: Any) -> None:
        self.site = site
        self.make_inner = make_inner
        self.inner: asyncio.Protocol | None = None
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen, so a head end split across reads is still found

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.site.open >= self.site.max_connections:
            self.site.refused += 1
            transport.write(_BUSY)
            transport.close()
            return
        self.site.open += 1
        self.inner = self.make_inner()
        assert self.inner is not None
        self.timer = asyncio.get_running_loop().call_later(self.site.header_timeout, self._late)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if self.timer is not None:
            seen = self.tail + data
            if b"\r\n\r\n" in seen:
                self.timer.cancel()  # from here on aiohttp's keep-alive timer bounds idle time
                self.timer = None
            else:
                self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.inner is not None:
            self.site.open -= 1
            self.inner.connection_lost(exc)
            self.inner = None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def _late(self) -> None:
        self.timer = None
        self.site.timed_out += 1
        if self.transport is not None:
            self.transport.close()


class ConnectionMetrics(Collector):
    """The site's connection counts on /metrics, read at scrape time."""

    def __init__(self, site: ApiSite) -> None:
        self.site = site

    def collect(self) -> Iterator[Metric]:
        site = self.site
        yield GaugeMetricFamily("alertd_api_connections_open", "Open API connections.", value=site.open)
        yield CounterMetricFamily(
            "alertd_api_connections_refused",
            "API connections answered 503 at once: api.max_connections were open.",
            value=site.refused,
        )
        yield CounterMetricFamily(
            "alertd_api_connections_timed_out",
            "API connections closed because their first request head did not arrive within api.header_timeout.",
            value=site.timed_out,
        )
