"""A group's message for one receiver: its template rendered, plus what the receiver's kind needs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alertd.alert import Alert
from alertd.dispatch.groups import AlertGroup
from alertd.notify.delivery import Receiver
from alertd.notify.limits import fit, receiver_limits
from alertd.notify.pagerduty import pagerduty_params
from alertd.notify.template import Rendered, Templates, build_context

log = logging.getLogger(__name__)


@dataclass
class Message:
    rendered: Rendered
    params: dict[str, str]  # Apprise URL parameters (PagerDuty's dedup key and severity)
    body_format: str  # markdown | text
    context: dict[str, Any] = field(default_factory=dict)  # the template's (a native receiver builds from it)


# A group's action links for its notification (`ack_url`, `silence_url`: signed, scoped to the
# group, expiring), or none: filled by the acknowledgement package when `external_url` is set.
Links = Callable[[AlertGroup, float], Mapping[str, str]]
LINK_KEYS = ("ack_url", "silence_url")


def no_links(group: AlertGroup, now: float) -> Mapping[str, str]:
    return {}


class Renderer:
    def __init__(self, templates: Templates, external_url: Callable[[], str], links: Links = no_links) -> None:
        self.templates = templates
        self.external_url = external_url
        self.links = links

    def render(
        self, receiver: Receiver, group: AlertGroup, firing: list[Alert], resolved: list[Alert], reason: str, now: float
    ) -> Message:
        ctx = build_context(
            receiver=receiver.name,
            group_key=group.key,
            group_labels=group.labels,
            firing=firing,
            resolved=resolved,
            reason=reason,
            external_url=self.external_url(),
            now=now,
        )
        links = self.links(group, now)
        ctx.update({k: links.get(k, "") for k in LINK_KEYS})  # templates test them, so always present
        template = receiver.config.template
        limits = receiver_limits(receiver.urls, native_slack=receiver.config.slack_api is not None)
        ctx["max_alerts"] = limits.alerts  # how many alerts to list; fit() lowers it until the message fits
        try:
            rendered = fit(lambda n: self.templates.render(template, {**ctx, "max_alerts": n}), limits)
        except Exception as e:
            # A template that fails on this data (checked at load, but data varies) must not
            # swallow the page: send it with the generic template and say so.
            log.error(
                "receiver %s: template %r failed (%s); sending with the generic template", receiver.name, template, e
            )
            rendered = fit(lambda n: self.templates.render("generic", {**ctx, "max_alerts": n}), limits)
            template = "generic"
        params: dict[str, str] = {}
        if template == "pagerduty":
            params = pagerduty_params(receiver.name, group.key, firing, ctx["common_labels"])
        return Message(rendered, params, "markdown" if template == "slack" else "text", ctx)
