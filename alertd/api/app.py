"""The aiohttp application: routes, auth, limits, and errors as clear JSON.

Every handler declares the role it needs; the middleware authenticates the caller, refuses
strangers (401) and the under-privileged (403) before the handler runs, so a refused write
changes nothing. Client mistakes are 400s that say what was wrong; nothing a client sends can
produce a 500 (the fuzz tests hold us to it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from alertd.ack.links import PATH as LINK_PATH
from alertd.api import acks, console, periodic, v1, v2
from alertd.api.context import ApiContext
from alertd.api.http import CTX, PRINCIPAL, Handler, error, needs
from alertd.api.wire import BadRequest
from alertd.auth import ANONYMOUS, AuthError, Logins, Role
from alertd.silence.silences import NotFound, SilenceError
from alertd.store.base import StoreUnavailable

log = logging.getLogger(__name__)

OPEN_PATHS = ("/healthz", "/readyz")
LOGINS: web.AppKey[Logins] = web.AppKey("logins", Logins)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX]
    cors = _cors_headers(request, ctx)
    if request.method == "OPTIONS" and cors:
        return web.Response(status=204, headers=cors)
    try:
        if request.path in OPEN_PATHS or _is_page(request.path):
            # probes and the page itself answer anyone: a stale token must not fail a health check
            request[PRINCIPAL] = ANONYMOUS
        else:
            header = request.headers.get("Authorization")
            principal = await ctx.auth.verify(header, request.app[LOGINS], request.remote or "")
            request[PRINCIPAL] = principal
            role = getattr(getattr(handler, "__wrapped__", handler), "role", None) or getattr(handler, "role", None)
            ctx.auth.authorize(principal, role or Role.READ)
        response = await handler(request)
    except AuthError as e:
        headers = {"WWW-Authenticate": 'Bearer realm="alertd"'} if e.status == 401 else {}
        response = web.json_response({"error": e.message}, status=e.status, headers={**headers, **e.headers})
    except BadRequest as e:
        response = error(400, str(e))
    except SilenceError as e:
        response = error(400, str(e))
    except NotFound as e:
        response = error(404, f"not found: {e.args[0]}")
    except StoreUnavailable as e:
        # An outage, not a bug: the store logged it once; a traceback per request would bury that.
        response = error(503, str(e))
        response.headers["Retry-After"] = "5"
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/json":
            response = error(e.status, e.reason)
            if "Allow" in e.headers:  # a 405 says which methods the path has (RFC 9110)
                response.headers["Allow"] = e.headers["Allow"]
        else:
            raise
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        response = error(500, "internal error (see alertd's log)")
    if request.path.startswith(v2.PREFIX + "/"):
        response = _as_spec_error(response)
    response.headers.update(cors)
    return response


def _as_spec_error(response: web.StreamResponse) -> web.StreamResponse:
    """Alertmanager's v2 spec has its 400, 404 and 500 bodies as a bare JSON string: amtool and the
    generated clients read them so. alertd's own {"error": ...} stays everywhere else."""
    if response.status not in (400, 404, 500) or not isinstance(response, web.Response) or response.body is None:
        return response
    try:
        doc = orjson.loads(response.body)  # type: ignore[arg-type]
    except (TypeError, orjson.JSONDecodeError):
        return response
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
        return response
    headers = {k: v for k, v in response.headers.items() if k not in ("Content-Type", "Content-Length")}
    return web.json_response(doc["error"], status=response.status, headers=headers)


def _is_page(path: str) -> bool:
    # a notification's signed link is its own permission (alertd.api.acks checks the signature)
    return path == "/" or path.startswith("/ui/") or path.startswith(LINK_PATH)


def _cors_headers(request: web.Request, ctx: ApiContext) -> dict[str, str]:
    origin = request.headers.get("Origin")
    if not origin or origin not in ctx.config.api.cors_origins:
        return {}
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Headers": "Authorization, Content-Type",
        "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
        "Vary": "Origin",
    }


@needs(Role.READ)
async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


@needs(Role.READ)
async def readyz(request: web.Request) -> web.Response:
    why = request.app[CTX].not_ready()
    if not why:
        return web.Response(text="ready\n")
    return web.Response(status=503, text=f"not ready: {'; '.join(why)}\n")


@needs(Role.READ)
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[CTX].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@needs(Role.ADMIN)
async def reload(request: web.Request) -> web.Response:
    result = await request.app[CTX].reload()
    problems = [str(p) for p in getattr(result, "problems", [])]
    return web.json_response({"ok": bool(result.ok), "problems": problems}, status=200 if result.ok else 400)


class _LoginMetrics(Collector):
    """Basic-auth attempts refused before any password check, on /metrics."""

    def __init__(self, logins: Logins) -> None:
        self.logins = logins

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "alertd_api_logins_refused",
            "Basic-auth attempts refused unchecked: busy (too many checks waiting), locked (too many failures).",
            labels=["reason"],
        )
        refused.add_metric(["busy"], self.logins.refused_busy)
        refused.add_metric(["locked"], self.logins.refused_locked)
        yield refused


def make_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=ctx.config.api.max_body_bytes)
    app[CTX] = ctx
    # the server's, not the users file's: failure counts survive a reload of the file
    api = ctx.config.api
    app[LOGINS] = Logins(
        max_failures=api.max_login_failures, window=api.login_failure_window, max_clients=api.max_login_clients
    )
    ctx.logins = app[LOGINS]
    ctx.registry.register(_LoginMetrics(app[LOGINS]))

    async def close_logins(app: web.Application) -> None:
        app[LOGINS].close()

    app.on_cleanup.append(close_logins)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/-/reload", reload)
    v2.add_routes(app)
    v1.add_routes(app)
    acks.add_routes(app)
    console.add_routes(app)
    periodic.add_routes(app)
    return app
