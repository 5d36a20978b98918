"""Hot reload of rule files: on SIGHUP, on a changed file, on POST /-/reload.

Valid files replace the rules; rules whose definition did not change keep their state (pending
timers, firing alerts). Invalid files keep the old rules running, and the problems are kept for
/metrics, the API and the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alertd.clock import Clock
from alertd.rules.engine import Engine
from alertd.rules.loader import expand_rule_paths, load_rules
from alertd.yamlfile import FileError, Problem

log = logging.getLogger(__name__)


@dataclass
class ReloadResult:
    ok: bool
    problems: list[Problem] = field(default_factory=list)
    rules: int = 0
    changed: int = 0  # rules added, removed or edited
    at: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "problems": [p.__dict__ for p in self.problems],
            "rules": self.rules,
            "changed": self.changed,
            "at": self.at,
        }


class RuleReloader:
    """Reloads the rule files named by the config's patterns into an engine."""

    def __init__(
        self, patterns: Sequence[str], base_dir: Path, engine: Engine, clock: Clock, *, max_window: float = 3600.0
    ):
        self.patterns = list(patterns)
        self.base_dir = base_dir
        self.engine = engine
        self.clock = clock
        self.max_window = max_window
        self.reloads_total = 0
        self.reload_failures_total = 0
        self.last = ReloadResult(ok=True, rules=len(engine.runtimes), at=clock.now())
        self._stamp = self._disk_stamp()

    def _disk_stamp(self) -> tuple[tuple[str, float, int], ...]:
        stamp = []
        for p in expand_rule_paths(self.patterns, self.base_dir):
            try:
                st = p.stat()
            except OSError:
                continue
            stamp.append((str(p), st.st_mtime, st.st_size))
        return tuple(stamp)

    def changed_on_disk(self) -> bool:
        """True when a rule file was added, removed or modified since the last reload."""
        return self._disk_stamp() != self._stamp

    def reload(self) -> ReloadResult:
        self.reloads_total += 1
        self._stamp = self._disk_stamp()
        now = self.clock.now()
        try:
            rules = load_rules(expand_rule_paths(self.patterns, self.base_dir), max_window=self.max_window)
        except FileError as e:
            self.reload_failures_total += 1
            self.last = ReloadResult(ok=False, problems=e.problems, rules=len(self.engine.runtimes), at=now)
            return self.last
        before = set(self.engine.runtimes)
        self.engine.replace_rules(rules)
        after = set(self.engine.runtimes)
        self.last = ReloadResult(ok=True, rules=len(after), changed=len(before ^ after), at=now)
        return self.last
