"""What a reload of alertd.yaml (SIGHUP, or the file changing) changes at once, and what waits for
a restart.

At once: everything routing reads - receivers, the route tree, inhibition rules, time intervals,
templates - and the API's tokens and basic-auth users, external_url (links in notifications) and
ha.claim_ttl. Only at start: what is connected or sized once - broker, store, rule_files (the
rule reloader watches the files it started with), the event source, sampler, observation limits,
silence limits, the replica's name and the listening socket. A changed start-only setting is
named in the log, so nobody believes it took effect.
"""

from __future__ import annotations

from typing import Any

from alertd.config.settings import Config

# Top-level sections that reload at once; every other top-level field waits for a restart.
AT_ONCE = ("receivers", "route", "inhibit_rules", "builtin_inhibit_rules", "time_intervals", "templates_dir")
API_AT_ONCE = ("tokens_file", "basic_auth_file", "external_url")
HA_AT_ONCE = ("claim_ttl",)


def merge_reload(running: Config, fresh: Config) -> tuple[Config, list[str]]:
    """The configuration in effect after reloading `fresh` over `running`, and the start-only
    settings that changed (dotted names) and so take effect only after a restart."""
    update: dict[str, Any] = {name: getattr(fresh, name) for name in AT_ONCE}
    update["api"] = running.api.model_copy(update={k: getattr(fresh.api, k) for k in API_AT_ONCE})
    update["ha"] = running.ha.model_copy(update={k: getattr(fresh.ha, k) for k in HA_AT_ONCE})
    effective = running.model_copy(update=update)
    return effective, _differences(effective, fresh)


def _differences(effective: Config, fresh: Config) -> list[str]:
    a, b = effective.model_dump(), fresh.model_dump()
    out: list[str] = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) == b.get(name):
            continue
        if isinstance(a.get(name), dict) and isinstance(b.get(name), dict):
            out.extend(f"{name}.{k}" for k in sorted(set(a[name]) | set(b[name])) if a[name].get(k) != b[name].get(k))
        else:
            out.append(name)
    return out
