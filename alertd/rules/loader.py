"""Load rule files into compiled rules, or say exactly what is wrong: file, line, field, expectation."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from alertd.catalogue import CATALOGUE, DISTRIBUTION_STATS, Kind, Metric
from alertd.durations import format_duration
from alertd.matchers import Matcher, MatcherError, parse_matcher
from alertd.rules.model import FlappingSpec, GroupSpec, RuleFileSpec, RuleSpec
from alertd.rules.templating import Template, check_template
from alertd.yamlfile import Document, FileError, Loc, Problem, load_yaml, validate

EVENT_TYPES = frozenset(
    {f"task-{s}" for s in ("sent", "received", "started", "succeeded", "failed", "retried", "rejected", "revoked")}
    | {"worker-online", "worker-heartbeat", "worker-offline"}
)
EVENT_FIELDS = ("task", "queue", "worker", "hostname", "exception", "exception_repr", "type", "uuid")
DEFAULT_RESOLVE_AFTER = 900.0


@dataclass(frozen=True)
class Rule:
    """A validated rule, ready to evaluate."""

    group: str
    file: str
    line: int
    name: str
    kind: str  # "metric" | "event" | "absent"
    spec: RuleSpec
    metric: Metric | None
    label_names: tuple[str, ...]  # labels of the series the rule reads (catalogue order)
    matchers: tuple[Matcher, ...]
    labels: dict[str, Template]
    annotations: dict[str, Template]
    events: frozenset[str]
    flapping: FlappingSpec | None  # the rule's own, else its group's; None: off
    digest: str  # changes when anything about the rule changes: a reload keeps state only if equal

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}/{self.digest}"


@dataclass
class Group:
    name: str
    file: str
    interval: float
    rules: list[Rule]


@dataclass
class RuleSet:
    groups: list[Group] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def rules(self) -> list[Rule]:
        return [r for g in self.groups for r in g.rules]


def expand_rule_paths(patterns: Sequence[str], base_dir: Path) -> list[Path]:
    """Globs and directories from `rule_files`, relative to the config's directory."""
    out: list[Path] = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        p = p if p.is_absolute() else base_dir / p
        if any(c in p.name for c in "*?["):
            out.extend(sorted(q for q in p.parent.glob(p.name) if q.is_file()))
        elif p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file()))
        else:
            out.append(p)
    return list(dict.fromkeys(out))


def load_rules(paths: Sequence[Path], *, max_window: float = 3600.0) -> RuleSet:
    """Every problem in every file at once, so one `alertd check` run shows them all."""
    problems: list[Problem] = []
    groups: list[Group] = []
    seen_groups: dict[str, str] = {}
    for path in paths:
        try:
            doc = load_yaml(path)
        except FileError as e:
            problems.extend(e.problems)
            continue
        except OSError as e:
            problems.append(Problem(str(path), None, "", f"cannot read: {e.strerror}"))
            continue
        if doc.data is None:
            continue  # an empty file is allowed: a placeholder for rules to come
        try:
            spec = validate(RuleFileSpec, doc)
        except FileError as e:
            problems.extend(e.problems)
            continue
        for gi, g in enumerate(spec.groups):
            loc: Loc = ("groups", gi, "name")
            if g.name in seen_groups:
                problems.append(doc.problem(loc, f"group {g.name!r} is already defined in {seen_groups[g.name]}"))
                continue
            seen_groups[g.name] = doc.file
            rules = []
            for ri, r in enumerate(g.rules):
                rule = _compile(doc, ("groups", gi, "rules", ri), g, r, max_window, problems)
                if rule is not None:
                    rules.append(rule)
            groups.append(Group(g.name, doc.file, g.interval, rules))
    if problems:
        raise FileError(problems)
    return RuleSet(groups, list(paths))


def _compile(
    doc: Document, loc: Loc, g: GroupSpec, r: RuleSpec, max_window: float, problems: list[Problem]
) -> Rule | None:
    before = len(problems)
    group, interval = g.name, g.interval
    flapping = (g.flapping if r.flapping is None else r.flapping) or None

    def bad(fieldname: str, message: str) -> None:
        problems.append(doc.problem((*loc, fieldname), message))

    kinds = [k for k in ("metric", "event", "absent") if getattr(r, k) is not None]
    if len(kinds) != 1:
        bad(
            "alert",
            "a rule needs exactly one of `metric`, `event` or `absent`"
            + (f" (got {', '.join(kinds)})" if kinds else ""),
        )
        return None
    kind = kinds[0]
    metric: Metric | None = None
    label_names: tuple[str, ...] = ()
    events: frozenset[str] = frozenset()

    if kind == "metric":
        assert r.metric is not None
        metric = CATALOGUE.get(r.metric)
        if metric is None:
            near = difflib.get_close_matches(r.metric, list(CATALOGUE), n=1, cutoff=0.5)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            bad("metric", f"unknown metric {r.metric!r}{hint} (the catalogue is in docs/rules.md)")
            return None
        label_names = metric.labels
        _check_metric_rule(r, metric, max_window, bad)
    elif kind == "event":
        types = [r.event] if isinstance(r.event, str) else list(r.event or [])
        unknown = [t for t in types if t not in EVENT_TYPES]
        if not types or unknown:
            bad(
                "event",
                f"unknown event type {', '.join(map(repr, unknown)) or '(none)'}; expected one of "
                f"{', '.join(sorted(EVENT_TYPES))}",
            )
        events = frozenset(types)
        label_names = EVENT_FIELDS
        for f in ("above", "below", "stat", "aggregate", "recover_below", "recover_above", "min_events"):
            if f in r.model_fields_set:
                bad(f, f"`{f}` is for metric rules; an event rule fires on matching events (use min_count / window)")
    else:
        assert r.absent is not None
        label_names = ("task",)
        for f in ("above", "below", "window", "stat", "aggregate", "matchers", "by", "min_count", "resolve_after"):
            if f in r.model_fields_set:
                bad(f, f"`{f}` does not apply to an absence rule; `absent: {{task, within}}` says it all")
        if r.absent.within > 366 * 86400:
            bad("absent", "`within` longer than a year is surely a mistake")

    if kind != "event":
        for f in ("min_count", "resolve_after"):
            if f in r.model_fields_set:
                bad(f, f"`{f}` is for event rules")

    matchers = []
    for mi, text in enumerate(r.matchers):
        try:
            m = parse_matcher(text)
        except MatcherError as e:
            problems.append(doc.problem((*loc, "matchers", mi), str(e)))
            continue
        if kind == "metric" and m.name not in label_names and m.name not in ("exception",):
            problems.append(
                doc.problem(
                    (*loc, "matchers", mi),
                    f"metric {r.metric} has no label {m.name!r}; its labels are {', '.join(label_names) or '(none)'}",
                )
            )
        matchers.append(m)
    allowed_by = set(label_names) | (
        {"exception"} if metric is not None and metric.name in ("tasks_failed", "tasks_retried") else set()
    )
    for bi, b in enumerate(r.by):
        if kind == "metric" and b not in allowed_by:
            problems.append(
                doc.problem(
                    (*loc, "by", bi),
                    f"metric {r.metric} has no label {b!r}; its labels are {', '.join(sorted(allowed_by)) or '(none)'}",
                )
            )

    templates: dict[str, dict[str, Template]] = {"labels": {}, "annotations": {}}
    for section in ("labels", "annotations"):
        for key, source in getattr(r, section).items():
            err = check_template(source)
            if err:
                problems.append(doc.problem((*loc, section, key), err))
            else:
                templates[section][key] = Template(source)
    if "alertname" in r.labels:
        bad("labels", "`alertname` is set from `alert:`; remove it from labels")

    if len(problems) > before:
        return None
    digest = hashlib.blake2b(
        orjson.dumps(
            {
                "group": group,
                "interval": interval,
                "rule": r.model_dump(mode="json", by_alias=True, exclude={"flapping"}),
                # only when set, so that rules without it keep the ids their saved state has
                **({"flapping": flapping.model_dump(mode="json")} if flapping else {}),
            },
            option=orjson.OPT_SORT_KEYS,
        ),
        digest_size=6,
    ).hexdigest()
    return Rule(
        group=group,
        file=doc.file,
        line=doc.line(loc) or 0,
        name=r.alert,
        kind=kind,
        spec=r,
        metric=metric,
        label_names=label_names,
        matchers=tuple(matchers),
        labels=templates["labels"],
        annotations=templates["annotations"],
        events=events,
        flapping=flapping,
        digest=digest,
    )


def _check_metric_rule(r: RuleSpec, metric: Metric, max_window: float, bad: Callable[[str, str], None]) -> None:
    windowed = metric.kind is not Kind.GAUGE
    if windowed and r.window is None:
        bad("window", f"{metric.name} is a {metric.kind.value}: say over which `window` (e.g. 10m)")
    if not windowed and r.window is not None:
        bad("window", f"{metric.name} is a gauge, read as it is at each evaluation; remove `window`")
    if r.window is not None and r.window > max_window:
        bad(
            "window",
            f"window {format_duration(r.window)} is longer than observe.retention "
            f"({format_duration(max_window)}); raise the retention in alertd.yaml or shorten the window",
        )
    if metric.kind is Kind.DISTRIBUTION:
        if r.stat is None:
            bad("stat", f"{metric.name} is a distribution: pick a `stat` ({', '.join(DISTRIBUTION_STATS)})")
        elif r.stat not in DISTRIBUTION_STATS:
            bad("stat", f"unknown stat {r.stat!r}; expected one of {', '.join(DISTRIBUTION_STATS)}")
    elif r.stat is not None:
        bad("stat", f"`stat` is for distributions; {metric.name} is a {metric.kind.value}")
    if r.aggregate is not None and metric.kind is not Kind.GAUGE:
        bad("aggregate", f"`aggregate` is for gauges; a {metric.kind.value} is summed over the window")
    if (r.above is None) == (r.below is None):
        bad("above", "a metric rule needs exactly one of `above` or `below`")
    if r.recover_below is not None:
        if r.above is None:
            bad("recover_below", "`recover_below` goes with `above`")
        elif r.recover_below > r.above:
            bad(
                "recover_below",
                f"must be at most `above` ({r.above}): it is the level the value must fall "
                "under before a firing alert resolves",
            )
    if r.recover_above is not None:
        if r.below is None:
            bad("recover_above", "`recover_above` goes with `below`")
        elif r.recover_above < r.below:
            bad("recover_above", f"must be at least `below` ({r.below})")
    if r.min_events and metric.kind not in (Kind.RATIO, Kind.DISTRIBUTION):
        bad("min_events", "`min_events` is for ratios and distributions (too little data never pages)")
