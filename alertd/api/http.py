"""Shared pieces of the API's handlers: the context key, role marks, JSON in and out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from alertd.api.context import ApiContext
from alertd.api.wire import BadRequest
from alertd.auth import Principal, Role

CTX: web.AppKey[ApiContext] = web.AppKey("ctx", ApiContext)
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def needs(role: Role) -> Callable[[Handler], Handler]:
    """Mark a handler with the role it needs (read for GETs, silence or admin for writes)."""

    def mark(fn: Handler) -> Handler:
        fn.__dict__["role"] = role
        return fn

    return mark


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def read_json(request: web.Request) -> Any:
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise BadRequest(f"expected a JSON body (Content-Type: application/json), got {request.content_type}")
    limit = request.app[CTX].config.api.body_timeout
    try:
        async with asyncio.timeout(limit):
            raw = await request.read()
    except TimeoutError:
        # a client that stops sending mid-body would otherwise hold its connection and buffer
        message = f"the body did not arrive within {limit:g} s (api.body_timeout)"
        raise web.HTTPRequestTimeout(
            body=orjson.dumps({"error": message}), content_type="application/json", headers={"Connection": "close"}
        ) from None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"body is not valid JSON: {e}") from None


def page_url(request: web.Request) -> str:
    """Where alertd's page is for this client: api.external_url, else the address it asked."""
    return request.app[CTX].config.api.external_url or str(request.url.origin())


def principal_name(request: web.Request) -> str:
    p = request.get(PRINCIPAL)
    return p.name if p is not None else "anonymous"


def bool_param(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name}: expected true or false, got {raw!r}")
