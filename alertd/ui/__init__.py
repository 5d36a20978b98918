"""The web page: alerts, silences, rules, history and stream health, served by the daemon.

Plain HTML, CSS and JavaScript shipped in the package: no build step, no CDN. The page uses the
same API and tokens as the CLI, and shows write controls only to tokens that may write.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    """Serve the page at / and its assets under /ui/."""
    app.router.add_get("/", index)
    app.router.add_static("/ui/", STATIC, show_index=False, append_version=True)
