"""The route tree, as in Alertmanager's dispatch/route.go.

An alert descends the tree: a route matches when all its matchers do; the first matching child
wins unless it sets `continue`, in which case later siblings are tried too; a route none of whose
children match takes the alert itself. Unset options are inherited from the parent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from alertd.config import RouteConfig
from alertd.matchers import Matcher, matches_all, parse_matcher

GROUP_BY_ALL = "..."
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass(frozen=True)
class Step:
    """An escalation step: `receiver` is paged too `after` seconds after the incident's first page."""

    after: float
    receiver: str


@dataclass
class Route:
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...] | None  # None: every label ('...')
    group_wait: float
    group_interval: float
    repeat_interval: float
    active_time_intervals: tuple[str, ...]
    mute_time_intervals: tuple[str, ...]
    id: str  # stable while the config is unchanged: the path of matchers from the root
    routes: list[Route] = field(default_factory=list)
    escalate: tuple[Step, ...] = ()  # in order of `after` (alertd.notify.escalate)

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes (leaves of the walk) this label set reaches."""
        if not matches_all(self.matchers, labels):
            return []
        reached: list[Route] = []
        for child in self.routes:
            got = child.match(labels)
            reached.extend(got)
            if got and not child.continue_:
                break
        return reached or [self]

    def path_to(self, target: Route) -> list[Route]:
        """Routes from the root down to `target` (for explain)."""
        if self is target:
            return [self]
        for child in self.routes:
            sub = child.path_to(target)
            if sub:
                return [self, *sub]
        return []

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by is None:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}

    def walk(self) -> list[Route]:
        out = [self]
        for child in self.routes:
            out.extend(child.walk())
        return out

    def describe(self) -> str:
        return "{" + ", ".join(str(m) for m in self.matchers) + "}" if self.matchers else "{}"


def build_route(cfg: RouteConfig, parent: Route | None = None, index: str = "") -> Route:
    """Compile the config tree, filling unset options from the parent (root: Alertmanager defaults)."""
    matchers = tuple(parse_matcher(m) for m in cfg.matchers)
    group_by: tuple[str, ...] | None
    if cfg.group_by is not None:
        group_by = None if GROUP_BY_ALL in cfg.group_by else tuple(cfg.group_by)
    else:
        group_by = parent.group_by if parent else ()
    route = Route(
        receiver=cfg.receiver or (parent.receiver if parent else ""),
        matchers=matchers if parent else (),  # the root matches everything, as in Alertmanager
        continue_=cfg.continue_ if parent else False,
        group_by=group_by,
        group_wait=_pick(cfg.group_wait, parent.group_wait if parent else DEFAULT_GROUP_WAIT),
        group_interval=_pick(cfg.group_interval, parent.group_interval if parent else DEFAULT_GROUP_INTERVAL),
        repeat_interval=_pick(cfg.repeat_interval, parent.repeat_interval if parent else DEFAULT_REPEAT_INTERVAL),
        active_time_intervals=tuple(cfg.active_time_intervals),
        mute_time_intervals=tuple(cfg.mute_time_intervals),
        id=(parent.id + "/" if parent else "") + (index or "root") + "{" + ",".join(cfg.matchers) + "}",
        escalate=tuple(Step(s.after, s.receiver) for s in cfg.escalate),  # not inherited
    )
    route.routes = [build_route(c, route, str(i)) for i, c in enumerate(cfg.routes)]
    return route


def _pick(value: float | None, inherited: float) -> float:
    return inherited if value is None else value
