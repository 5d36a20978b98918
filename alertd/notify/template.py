"""Notification templates: Jinja2 in a sandbox, one file per style with title/body/html blocks.

Built-in templates live in alertd/templates/ (package data, so an installed wheel has them);
`templates_dir` in alertd.yaml overrides them by file name, and a receiver's `template:` may be a
path to a file of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, TemplateError, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment

from alertd.alert import Alert, AlertState
from alertd.humanize import FILTERS, duration
from alertd.jinjacheck import unknown_name

BUILTIN_DIR = Path(__file__).resolve().parents[1] / "templates"  # inside the package: a wheel has them
TRACEBACK_LINES = 10
TRACEBACK_MAX = 1500  # characters kept from the end of a traceback
TEXT_MAX = 2000  # any annotation
LABEL_MAX = 300  # a label value (an exception repr can be a whole payload)


def trim_text(text: Any, limit: int = TEXT_MAX) -> str:
    """At most `limit` characters: long task output never floods a page."""
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def trim_lines(text: Any, lines: int = TRACEBACK_LINES, limit: int = TRACEBACK_MAX) -> str:
    """The last lines of a traceback, which say where it failed, and at most `limit` characters of them."""
    parts = ("" if text is None else str(text)).rstrip().splitlines()
    out = "\n".join(parts if len(parts) <= lines else ["…", *parts[-lines:]])
    return out if len(out) <= limit else "…" + out[-(limit - 1) :]


def _is_traceback(key: str, value: str) -> bool:
    return "traceback" in key.lower() or "Traceback (most recent call last)" in value


@dataclass
class Rendered:
    title: str
    body: str
    html: str | None = None


class Templates:
    """Finds and renders templates by name or path."""

    def __init__(self, override_dir: Path | None = None, base_dir: Path | None = None) -> None:
        self.base_dir = base_dir  # relative template paths in alertd.yaml are relative to it
        dirs = [str(d) for d in (override_dir, BUILTIN_DIR) if d is not None]
        self.env = SandboxedEnvironment(loader=FileSystemLoader(dirs), autoescape=False, trim_blocks=False)
        self.env.filters.update(FILTERS)
        self.env.filters["trim_text"] = trim_text
        self.env.filters["trim_lines"] = trim_lines

    def exists(self, name: str) -> bool:
        return self.problem(name) is None

    def problem(self, name: str) -> str | None:
        """Why template `name` cannot be used (not found, syntax error with its line), or None."""
        try:
            tpl = self._get(name)
            unknown = unknown_name(self.env, self._source(name, tpl))
            if unknown:
                return f"template {name!r} line {unknown[1]}: {unknown[0]}"
        except TemplateNotFound:
            builtin = "slack, email, pagerduty, generic, json"
            return f"template {name!r} not found (built-in: {builtin}; or a path to a .j2 file)"
        except TemplateError as e:
            line = getattr(e, "lineno", None)
            return f"template {name!r}{f' line {line}' if line else ''}: {e.message or e}"
        except OSError as e:
            return f"template {name!r}: {e.strerror}"
        return None

    def _source(self, name: str, tpl: Any) -> str:
        """The text `tpl` was compiled from (a path in alertd.yaml, or a file the loader found)."""
        if tpl.filename and Path(tpl.filename).is_file():
            return Path(tpl.filename).read_text()
        path = Path(name)
        if not path.is_absolute() and self.base_dir is not None:
            path = self.base_dir / path
        return path.read_text()

    def _get(self, name: str) -> Any:
        if "/" in name or name.endswith(".j2"):
            path = Path(name)
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            return self.env.from_string(path.read_text()) if path.is_file() else self.env.get_template(name)
        return self.env.get_template(f"{name}.j2")

    def render(self, name: str, context: dict[str, Any]) -> Rendered:
        tpl = self._get(name)
        ctx = tpl.new_context(context)

        def block(block_name: str) -> str | None:
            fn = tpl.blocks.get(block_name)
            return "".join(fn(ctx)).strip() if fn else None

        return Rendered(title=block("title") or "", body=block("body") or "", html=block("html"))


def _iso(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t else ""


def _value_text(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:.4g}"


def resolved_text(a: Alert, distinct: dict[str, str], now: float) -> str:
    """A resolved alert in words: `CeleryQueueBacklog queue=reports is resolved after 12m, last
    value 3`. Its summary was rendered while it fired, with the value of then ("reports has 150
    messages"): repeated as the news of a resolve it reads as if still true. The value is the
    rule's last reading: for a metric rule, the one it resolved at."""
    labels = "".join(f" {k}={v}" for k, v in distinct.items() if k != "alertname")
    value = f", last value {_value_text(a.value)}" if a.value is not None else ""
    return f"{a.name or 'alert'}{labels} is resolved after {duration((a.ends_at or now) - a.starts_at)}{value}"


def alert_view(a: Alert, common: dict[str, str], now: float) -> dict[str, Any]:
    # Every text is bounded here, before any template sees it: a custom template cannot dump a
    # 50 kB task traceback into a page.
    annotations = {k: trim_lines(v) if _is_traceback(k, str(v)) else trim_text(v) for k, v in a.annotations.items()}
    labels = {k: trim_text(v, LABEL_MAX) for k, v in a.labels.items()}
    distinct = {k: v for k, v in labels.items() if k not in common}
    return {
        "labels": labels,
        "annotations": annotations,
        "distinct_labels": distinct,
        "value": a.value,
        "value_text": _value_text(a.value),
        "status": "resolved" if a.state is AlertState.RESOLVED else "firing",
        # empty while firing, so `a.resolved_text or a.annotations.summary` reads right in both
        "resolved_text": resolved_text(a, distinct, now) if a.state is AlertState.RESOLVED else "",
        "since": _iso(a.starts_at),
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "duration": duration((a.ends_at or now) - a.starts_at),
        "fingerprint": a.fingerprint,
        "generator": a.generator,
    }


def common_of(maps: Sequence[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first = maps[0]
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in maps[1:])}


def build_context(
    *,
    receiver: str,
    group_key: str,
    group_labels: dict[str, str],
    firing: Sequence[Alert],
    resolved: Sequence[Alert],
    reason: str,
    external_url: str,
    now: float,
) -> dict[str, Any]:
    """Everything a template may use; the `webhook` key is Alertmanager's webhook payload shape."""
    alerts = [*firing, *resolved]
    common_labels = {k: trim_text(v, LABEL_MAX) for k, v in common_of([a.labels for a in alerts]).items()}
    common_annotations = {
        k: trim_lines(v) if _is_traceback(k, str(v)) else trim_text(v)
        for k, v in common_of([a.annotations for a in alerts]).items()
    }
    status = "firing" if firing else "resolved"
    views_f = [alert_view(a, common_labels, now) for a in firing]
    views_r = [alert_view(a, common_labels, now) for a in resolved]
    return {
        "receiver": receiver,
        "status": status,
        "reason": reason,
        "group_key": group_key,
        "group_labels": group_labels,
        "common_labels": common_labels,
        "common_annotations": common_annotations,
        "firing": views_f,
        "resolved": views_r,
        "alerts": views_f + views_r,
        "external_url": external_url,
        "max_alerts": len(alerts),  # the renderer lowers it to what fits the receiver (alertd.notify.limits)
        "webhook": {
            "version": "4",
            "groupKey": group_key,
            "status": status,
            "receiver": receiver,
            "reason": reason,
            "groupLabels": group_labels,
            "commonLabels": common_labels,
            "commonAnnotations": common_annotations,
            "externalURL": external_url,
            "alerts": [
                {
                    "status": v["status"],
                    "labels": v["labels"],
                    "annotations": v["annotations"],
                    "startsAt": _rfc3339(v["starts_at"]),
                    "endsAt": _rfc3339(v["ends_at"]),
                    "fingerprint": v["fingerprint"],
                    "value": v["value"],
                }
                for v in views_f + views_r
            ],
        },
    }


def _rfc3339(t: float | None) -> str:
    if not t:
        return "0001-01-01T00:00:00Z"
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
