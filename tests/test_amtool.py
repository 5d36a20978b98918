"""Alertmanager's own amtool (Debian's prometheus-alertmanager package) against a running alertd:
every read subcommand, and silences added, expired and imported, as an operator types them.

`config show`, `config routes` and `check-config` parse /api/v2/status's `config.original` with
Alertmanager's config loader, so they prove alertd's routing renders as a config Alertmanager
accepts (Prometheus durations, its field names). alertd runs in-process on a virtual clock kept
at the wall clock's time, because amtool judges silence states (`silence query -e`) by its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alertd import __version__
from alertd.api.amconfig import alertmanager_yaml
from alertd.api.v2 import ALERTMANAGER_API_VERSION
from alertd.config import Config, load_config
from alertd.inhibit import effective_rules
from tests.api_fixtures import SILENCE_TOKEN, SINK_SECRET, Harness, ThreadedHarness
from tests.conftest import ROOT

AMTOOL = shutil.which("amtool")
pytestmark = pytest.mark.skipif(
    AMTOOL is None, reason="amtool is not installed (apt-get install prometheus-alertmanager; .ci/run installs it)"
)

# Below the `hook` root route api_fixtures writes: a child route, a time interval and an
# inhibition rule, so every section of Alertmanager's config has something in it.
ROUTING = """
  routes:
    - matchers: ['queue="payments"', 'severity=~"warn|crit.*"']
      receiver: console
      group_by: [alertname, queue]
      group_wait: 30s
      repeat_interval: 1d12h
      mute_time_intervals: [weekend]
time_intervals:
  - name: weekend
    time_intervals:
      - weekdays: ["saturday:sunday"]
        times: [{start_time: "00:00", end_time: "24:00"}]
        location: Europe/Berlin
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [task]
"""


@pytest.fixture(name="alertd")
def alertd_fixture(tmp_path: Path) -> Iterator[ThreadedHarness]:
    t = ThreadedHarness(_mkdir(tmp_path / "a"), f"sqlite:///{tmp_path}/a.db", extra=ROUTING, ahead=0)
    yield t
    t.close()


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def amtool(t: ThreadedHarness, *argv: str, token: str = SILENCE_TOKEN, stdin: str | None = None) -> Any:
    """Run amtool against alertd, its token in an HTTP config file as docs/api.md says."""
    home = _mkdir(Path(t.h.daemon.config.base_dir) / "home")  # no ~/.config/amtool of the machine's
    http = home / "amtool-http.yml"
    http.write_text(f"authorization: {{credentials: {token}}}\n")
    assert AMTOOL is not None
    return subprocess.run(
        [AMTOOL, f"--alertmanager.url={t.base}", f"--http.config.file={http}", *argv],
        capture_output=True, text=True, timeout=60, input=stdin, cwd=home, env={**os.environ, "HOME": str(home)},
    )  # fmt: skip


def ok(result: Any) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return str(result.stdout)


def version_warning(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if line.startswith("Warning: amtool version"))


async def catch_up(h: Harness) -> None:
    """Bring the virtual clock to the wall clock's time (amtool's "now") and evaluate."""
    h.clock.set(max(h.clock.now(), time.time()))
    await h.daemon.tick()  # which flushes what is due
    await h.daemon.notifier.settle()


async def _fire(h: Harness) -> None:
    await catch_up(h)
    h.fail_task()
    await h.step(1)  # the rule's interval: catch_up has just evaluated it


def fire(t: ThreadedHarness) -> None:
    """TaskFailed fires; then the wall clock catches up with alertd's (a silence alertd expires
    at its "now" must have ended by amtool's too)."""
    t.run(_fire(t.h))
    time.sleep(max(0.0, t.h.clock.now() - time.time()))


def status_config(t: ThreadedHarness, tmp: Path) -> Path:
    """What /api/v2/status says the config is, as a file."""
    path = tmp / "status-config.yml"
    path.write_text(t.get_json("/api/v2/status")["config"]["original"])
    return path


# -- config ---------------------------------------------------------------------------------


def test_check_config_accepts_what_status_returns(alertd: ThreadedHarness, tmp_path: Path) -> None:
    """It said: `not a valid duration string: "1.0"`; the status had alertd.yaml's keys and floats."""
    path = status_config(alertd, tmp_path)
    assert AMTOOL is not None
    checked = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, (checked.stdout, checked.stderr, path.read_text())
    assert "SUCCESS" in checked.stdout
    assert " - 2 receivers" in checked.stdout  # hook, and console (alertd always has it)
    config = alertd.h.daemon.config
    rules = effective_rules(config.inhibit_rules, builtin=True)  # the built-in ones and the configured one
    assert len(config.inhibit_rules) == 1 and f" - {len(rules)} inhibit rules" in checked.stdout


EDGES = r"""
receivers: [{name: a}, {name: "b c"}]
route:
  receiver: a
  group_by: [alertname, '...']
  routes:
    - matchers: ['x=~"a\"b|c.*"', 'y!="q\\z"']
      receiver: "b c"
      group_interval: 1500ms
      active_time_intervals: [nights]
time_intervals:
  - name: nights
    time_intervals: [{weekdays: ['friday:monday', 'wednesday'], times: [{start_time: '22:00', end_time: '24:00'}]}]
"""


# alertd's own escalation policy (docs/routing.md): not an Alertmanager field, so left out
ESCALATION = """
receivers: [{name: primary}, {name: secondary}, {name: manager}]
route:
  receiver: primary
  escalate: [{after: 10m, receiver: manager}]
  routes:
    - matchers: ['severity="critical"']
      receiver: primary
      escalate:
        - {after: 15m, receiver: secondary}
        - {after: 45m, receiver: manager}
"""


@pytest.mark.parametrize("source", ["defaults", "deploy/alertd.yaml", "edges", "escalation"])
def test_check_config_accepts_the_routing_of_every_shipped_config(source: str, tmp_path: Path) -> None:
    """The defaults (no route: the console), the deploy example, and what Alertmanager words
    otherwise: `...` beside other labels, a wrapping weekday range, quotes and backslashes."""
    if source in ("edges", "escalation"):
        (tmp_path / "alertd.yaml").write_text(EDGES if source == "edges" else ESCALATION)
        config = load_config(tmp_path / "alertd.yaml")
    else:
        config = Config() if source == "defaults" else load_config(ROOT / source)
    path = tmp_path / "am.yml"
    path.write_text(alertmanager_yaml(config))
    assert AMTOOL is not None
    checked = subprocess.run([AMTOOL, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, (checked.stdout, path.read_text())
    if source == "edges":
        routed = subprocess.run(
            [AMTOOL, "config", "routes", f"--config.file={path}"], capture_output=True, text=True, timeout=60
        )
        assert r'{x=~"a\"b|c.*",y!="q\\z"}  receiver: b c' in routed.stdout, routed.stdout
    if source == "escalation":
        assert "escalate" not in path.read_text() and " - 4 receivers" in checked.stdout


def test_config_show_prints_alertmanager_durations_and_names(alertd: ThreadedHarness) -> None:
    shown = ok(amtool(alertd, "config", "show"))
    # Prometheus durations, as Alertmanager prints them: 1d12h, not 129600.0
    for line in ("group_wait: 1s", "group_interval: 2s", "repeat_interval: 3s", "group_wait: 30s"):
        assert line in shown, shown
    assert "repeat_interval: 1d12h" in shown
    assert not re.search(r"_(wait|interval): [0-9.]+$", shown, re.M), shown
    # Alertmanager's sections, none of alertd's own settings (Alertmanager refuses unknown keys)
    for key in ("route:", "receivers:", "inhibit_rules:", "time_intervals:", "mute_time_intervals:"):
        assert key in shown
    for key in ("broker", "apprise", "store:", "api:", "observe:", "builtin_inhibit_rules"):
        assert key not in shown
    assert SINK_SECRET not in shown and "127.0.0.1" not in shown  # receivers by name, never a URL


def test_the_full_alertd_config_is_still_served_redacted(alertd: ThreadedHarness) -> None:
    full = alertd.get_json("/api/alertd/v1/config")
    assert full["route"]["group_wait"] == 1.0 and full["api"]["max_body_bytes"] == 64 * 1024
    assert [r["name"] for r in full["receivers"]] == ["hook"]
    assert SINK_SECRET not in json.dumps(full)


def test_config_routes_tree_and_routes_test(alertd: ThreadedHarness) -> None:
    tree = ok(amtool(alertd, "config", "routes"))
    assert "default-route  receiver: hook" in tree, tree
    assert re.search(r'\{queue="payments",\s*severity=~"warn\|crit\.\*"\}.*receiver: console', tree), tree

    def receiver(*labels: str) -> str:
        return ok(amtool(alertd, "config", "routes", "test", *labels)).strip()

    assert receiver("queue=payments", "severity=critical") == "console"
    assert receiver("queue=payments", "severity=warn") == "console"
    assert receiver("queue=payments", "severity=warning") == "hook"  # regexes are anchored
    assert receiver("queue=payments", "severity=info") == "hook"
    assert receiver("alertname=TaskFailed", "task=billing.charge") == "hook"
    # what amtool resolves is where alertd sends it: the firing alert's receivers agree
    fire(alertd)
    [alert] = alertd.get_json("/api/v2/alerts")
    labels = [f"{k}={v}" for k, v in alert["labels"].items()]
    assert [r["name"] for r in alert["receivers"]] == [receiver(*labels)] == ["hook"]
    # --verify.receivers makes it a check: exit 1 when the tree sends elsewhere
    assert amtool(alertd, "config", "routes", "test", "--verify.receivers=console", *labels).returncode == 1


def test_version_is_an_alertmanager_version_with_alertds_own_beside_it(alertd: ThreadedHarness) -> None:
    """It said `version: 0.1.0` (alertd's): amtool warned, tools reading an AM version misread it."""
    info = alertd.get_json("/api/v2/status")["versionInfo"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["version"]) and info["version"] == ALERTMANAGER_API_VERSION
    assert info["revision"] == f"alertd-{__version__}"
    # amtool warns exactly when its major.minor is not the one alertd's API matches
    assert AMTOOL is not None
    own = re.search(r"version (\d+\.\d+)", subprocess.run([AMTOOL, "--version"], capture_output=True, text=True).stdout)
    assert own is not None
    warning = version_warning(amtool(alertd, "config", "show").stderr)
    if own.group(1) == ".".join(ALERTMANAGER_API_VERSION.split(".")[:2]):
        assert warning == ""
    else:
        assert f"alertmanager version ({ALERTMANAGER_API_VERSION}) are different" in warning


def test_cluster_show(alertd: ThreadedHarness) -> None:
    shown = ok(amtool(alertd, "cluster", "show", "-o", "extended"))
    assert "Cluster Status:  ready" in shown and "test-replica" in shown


# -- alerts ---------------------------------------------------------------------------------


def test_alert_query_with_matchers(alertd: ThreadedHarness) -> None:
    fire(alertd)
    listed = ok(amtool(alertd, "alert", "query", "alertname=TaskFailed"))
    assert "TaskFailed" in listed and "billing.charge failed" in listed
    found = json.loads(ok(amtool(alertd, "alert", "query", "-o", "json", 'severity=~"crit.*"', "task=billing.charge")))
    assert [a["labels"]["task"] for a in found] == ["billing.charge"]
    assert found[0]["status"]["state"] == "active"
    assert json.loads(ok(amtool(alertd, "alert", "query", "-o", "json", "task=other"))) == []
    assert json.loads(ok(amtool(alertd, "alert", "query", "-o", "json", "TaskFailed"))) != []  # bare = alertname


# -- silences -------------------------------------------------------------------------------


def add(t: ThreadedHarness, *matchers: str, comment: str = "deploy 4.2", duration: str = "2h") -> str:
    sid = ok(amtool(t, "silence", "add", *matchers, "--comment", comment, "--author", "ana", "--duration", duration))
    t.run(catch_up(t.h))  # amtool's "now" has passed on alertd's clock too: the silence is active
    return sid.strip()


def query(t: ThreadedHarness, *argv: str) -> list[dict[str, Any]]:
    return list(json.loads(ok(amtool(t, "silence", "query", "-o", "json", *argv))))


def test_silence_add_query_expire(alertd: ThreadedHarness) -> None:
    fire(alertd)
    sid = add(alertd, "task=billing.charge")
    assert re.fullmatch(r"[0-9a-f-]{36}", sid), sid
    [s] = query(alertd)
    assert (s["id"], s["createdBy"], s["comment"], s["status"]["state"]) == (sid, "ana", "deploy 4.2", "active")
    simple = ok(amtool(alertd, "silence", "query"))
    assert sid in simple and "ana" in simple and "deploy 4.2" in simple and 'task="billing.charge"' in simple
    assert ok(amtool(alertd, "silence", "query", "-q")).split() == [sid]
    # the silenced alert: hidden by default, shown with --silenced, silenced by this ID
    assert json.loads(ok(amtool(alertd, "alert", "query", "-o", "json"))) == []
    [shown] = json.loads(ok(amtool(alertd, "alert", "query", "-o", "json", "--silenced")))
    assert shown["status"]["silencedBy"] == [sid]

    ok(amtool(alertd, "silence", "expire", sid))
    alertd.run(catch_up(alertd.h))
    assert query(alertd) == []  # amtool leaves expired silences out by default
    [gone] = query(alertd, "--expired")
    assert gone["id"] == sid and gone["status"]["state"] == "expired"
    assert json.loads(ok(amtool(alertd, "alert", "query", "-o", "json")))[0]["labels"]["task"] == "billing.charge"
    # expiring twice is not an error (Alertmanager 0.25's amtool treats it as done); an unknown ID is
    assert amtool(alertd, "silence", "expire", sid).returncode == 0
    assert amtool(alertd, "silence", "expire", "00000000-0000-0000-0000-000000000000").returncode != 0


def test_silence_update_keeps_the_id(alertd: ThreadedHarness) -> None:
    """`amtool silence update` posts back the startsAt it read, to the millisecond: alertd held it to
    the microsecond, so an active silence was replaced (new ID) instead of updated in place.
    Alertmanager 0.34's canUpdate compares an active silence's start to the second."""
    alertd.run(catch_up(alertd.h))  # alertd's "now": the wall clock's, to the microsecond
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    sid = add(alertd, "queue=reports", "--start", started, comment="backfill")  # a start in the past: now
    before = alertd.get_json(f"/api/v2/silence/{sid}")
    updated = ok(amtool(alertd, "silence", "update", sid, "--duration", "3h", "--comment", "backfill, longer"))
    assert sid in updated, updated
    [s] = query(alertd)
    assert (s["id"], s["comment"], s["startsAt"]) == (sid, "backfill, longer", before["startsAt"])
    assert s["endsAt"] != before["endsAt"]


def test_silence_query_filters(alertd: ThreadedHarness) -> None:
    payments = add(alertd, "queue=payments", "severity=critical", comment="payments upgrade")
    reports = add(alertd, "queue=reports", comment="reports backfill", duration="30m")
    billing = add(alertd, "task=billing.charge", comment="billing deploy")
    ok(amtool(alertd, "silence", "expire", billing))
    alertd.run(catch_up(alertd.h))

    def ids(*argv: str) -> set[str]:
        return {s["id"] for s in query(alertd, *argv)}

    assert ids() == {payments, reports}
    assert ids("queue=payments") == {payments}
    assert ids("queue=payments", "severity=critical") == {payments}
    assert ids("queue=payments", "severity=warning") == set()
    assert ids("--within", "1h") == {reports}  # ends within the hour
    assert ids("--expired") == {billing}
    assert ids("--expired", "task=billing.charge") == {billing} and ids("--expired", "queue=payments") == set()
    assert ids("--expired", "--within", "1h") == {billing}  # expired within the past hour
    # the silences' own order, as Alertmanager sorts them: active ones ending soonest first
    assert [s["id"] for s in query(alertd)] == [reports, payments]


def test_silence_import_what_query_exported(alertd: ThreadedHarness, tmp_path: Path) -> None:
    """`amtool silence query -o json > f; amtool silence import f`, into the same alertd and a new one."""
    first = add(alertd, "queue=payments", comment="payments upgrade")
    second = add(alertd, "alertname=~CeleryWorker.*", "queue=reports", comment="reports workers")
    exported = ok(amtool(alertd, "silence", "query", "-o", "json"))
    dump = tmp_path / "silences.json"
    dump.write_text(exported)

    # into a fresh alertd: the IDs are unknown there (404), so amtool creates them anew
    other = ThreadedHarness(_mkdir(tmp_path / "b"), f"sqlite:///{tmp_path}/b.db", ahead=0)
    try:
        imported = ok(amtool(other, "silence", "import", str(dump))).split()
        assert len(imported) == 2 and not {first, second} & set(imported)
        other.run(catch_up(other.h))
        copies = query(other)
        assert {s["comment"] for s in copies} == {"payments upgrade", "reports workers"}
        assert {s["createdBy"] for s in copies} == {"ana"}
        matchers = {tuple((m["name"], m["value"], m["isRegex"]) for m in s["matchers"]) for s in copies}
        assert (("alertname", "CeleryWorker.*", True), ("queue", "reports", False)) in matchers
    finally:
        other.close()

    # into the same alertd while they are active: updated in place, same IDs
    assert sorted(ok(amtool(alertd, "silence", "import", str(dump))).split()) == sorted([first, second])
    assert {s["id"] for s in query(alertd)} == {first, second}
    # into the same alertd, from stdin, after expiring them: the expired ones are replaced
    for sid in (first, second):
        ok(amtool(alertd, "silence", "expire", sid))
    alertd.run(catch_up(alertd.h))
    again = ok(amtool(alertd, "silence", "import", stdin=exported)).split()
    alertd.run(catch_up(alertd.h))
    assert len(again) == 2 and not {first, second} & set(again)
    assert {s["id"] for s in query(alertd)} == set(again)
    # --force ignores the IDs: a second copy of each
    ok(amtool(alertd, "silence", "import", "--force", str(dump)))
    alertd.run(catch_up(alertd.h))
    assert len(query(alertd)) == 4
