"""The docs against what they describe: what they say the page shows is on it."""

from __future__ import annotations

import re

from tests.conftest import ROOT
from tests.docs_fixtures import DOCS

UI = ROOT / "alertd" / "ui" / "static"


def health_tab_text() -> str:
    """The Health tab as the page builds it: its section in index.html and app.js's loadHealth."""
    html = (UI / "index.html").read_text()
    section = html[html.index('id="tab-health"') : html.index("</section>", html.index('id="tab-health"'))]
    js = (UI / "app.js").read_text()
    load = js[js.index("async function loadHealth") :]
    return section + load[: load.index("\n}\n")]


def test_what_the_docs_say_the_health_tab_shows_is_on_it() -> None:
    """docs/troubleshooting.md said the Health tab lists each worker's queues: it has no queue."""
    shown = health_tab_text().lower()
    for doc in DOCS:
        for sentence in re.split(r"(?<=[.;)])\s", doc.read_text()):
            if "health tab" not in sentence.lower():
                continue
            claim = re.sub(r",?\s+not\s+(their\s+)?\w+", "", sentence.lower())  # "…, not their queues" is no claim
            for word in ("queue", "broker", "worker", "heartbeat", "memory", "pool", "replica", "version"):
                if word in claim:
                    assert word in shown, f"{doc.name}: {sentence.strip()!r}: the Health tab shows no {word}"
