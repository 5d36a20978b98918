"""A small HTTP client for the CLI commands that talk to a running alertd (silence, alert)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="alertd's API (default: $ALERTD_URL, else http://<api.listen> from the config)")
    p.add_argument("--token-file", type=Path, help="file holding the API token (default: $ALERTD_TOKEN)")


class Client:
    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.token = token

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Client:
        url = args.url or os.environ.get("ALERTD_URL")
        if not url:
            # Only without --url or $ALERTD_URL: the config models cost ~0.15 s of start-up.
            from alertd.config import find_config, load_config
            from alertd.yamlfile import FileError

            try:
                listen = load_config(find_config(args.config)).api.listen
            except FileError:
                listen = "127.0.0.1:9093"
            url = f"http://{listen}"
        token = os.environ.get("ALERTD_TOKEN")
        if args.token_file:
            try:
                token = Path(args.token_file).read_text().strip()
            except OSError as e:
                raise ApiError(-1, f"--token-file {args.token_file}: {e.strerror}") from None
        return cls(url, token)

    def request(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                doc = json.loads(raw)
                # a v2 error is a bare JSON string (Alertmanager's spec); alertd's own are {"error": ...}
                message = doc if isinstance(doc, str) else str(doc.get("error", raw.decode()))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise ApiError(e.code, message) from None
        except urllib.error.URLError as e:
            raise ApiError(0, f"cannot reach alertd at {self.url}: {e.reason}") from None
        return json.loads(raw) if raw else None


def fail(e: ApiError) -> int:
    """Report an API error; exit 1 for a refusal by alertd, 2 for a local usage error, 3 if unreachable."""
    print(f"alertd: {e} (HTTP {e.status})" if e.status > 0 else f"alertd: {e}", file=sys.stderr)
    if e.status < 0:
        return 2
    return 1 if e.status != 0 else 3


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
