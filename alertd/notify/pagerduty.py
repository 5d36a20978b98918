"""What a PagerDuty receiver needs beyond the message: a dedup key and a severity (Apprise URL
parameters), so the incident a trigger opens is the one its resolve closes; and the acknowledge
event Apprise cannot send.

An ack in alertd must reach PagerDuty as an acknowledgement, not as one more trigger: PagerDuty
escalates an incident by its own policy until someone acknowledges it there, so an ack it never
heard of would let it page the next person anyway. Apprise's plugin knows trigger and resolve
only; the acknowledge event (Events API v2, same endpoint, same routing and dedup keys) is sent
here with requests, as the plugin sends its own, from the URL the plugin would have sent from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

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


def is_pagerduty(url: str) -> bool:
    return url.startswith("pagerduty://")


def acknowledge(url: str, timeout: float) -> tuple[bool, str]:
    """Acknowledge the incident of the Apprise URL `url` (with alertd's dedup parameter), blocking:
    run it off the event loop. (ok, error); the error never holds the URL's keys."""
    import requests
    from apprise.plugins.pagerduty import PAGERDUTY_API_LOOKUP, NotifyPagerDuty

    parsed: dict[str, Any] | None = NotifyPagerDuty.parse_url(url)
    if not parsed:
        return False, "not a PagerDuty URL Apprise can read"
    plugin = NotifyPagerDuty(**parsed)
    if not plugin.dedup:
        return False, "no dedup key: nothing to acknowledge"
    payload = {"routing_key": plugin.integration_key, "event_action": "acknowledge", "dedup_key": plugin.dedup}
    headers = {"User-Agent": plugin.app_id, "Content-Type": "application/json"}
    try:
        r = requests.post(PAGERDUTY_API_LOOKUP[plugin.region_name], json=payload, headers=headers, timeout=timeout)
    except requests.RequestException as e:
        return False, f"PagerDuty acknowledge failed: {type(e).__name__}"
    if r.status_code not in (200, 201, 202, 204):
        return False, f"PagerDuty acknowledge refused: HTTP {r.status_code}"
    return True, ""
