"""What a PagerDuty receiver needs beyond the message: a dedup key and a severity (Apprise URL
parameters), so the incident a trigger opens is the one its resolve closes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from alertd.alert import Alert

SEVERITY_TO_PAGERDUTY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
ORDER = ["critical", "error", "warning", "info"]


def pagerduty_params(
    receiver: str, group_key: str, firing: list[Alert], common_labels: Mapping[str, str]
) -> dict[str, str]:
    # A dedup key stable per group: the incident PagerDuty opens is the one the resolve closes.
    params = {"dedup": hashlib.sha256(f"{receiver}|{group_key}".encode()).hexdigest()[:32]}
    params["action"] = "map"  # trigger while firing, resolve when all resolved
    severities = [a.labels.get("severity", "") for a in firing] or ["info"]
    worst = min((ORDER.index(SEVERITY_TO_PAGERDUTY.get(s, "warning")) for s in severities), default=3)
    params["severity"] = ORDER[worst]
    for k, v in list(common_labels.items())[:10]:
        params[f"+{k}"] = v
    return params
