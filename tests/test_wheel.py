"""What docs/deploy.md says to do instead of `pip install alertd` (not on PyPI): `make dist`
builds a wheel that installs in a fresh virtualenv and runs from anywhere, its notification
templates and web page inside the installed package, not read from the checkout.

Needs pip to reach PyPI or the configured mirror/wheelhouse for the dependencies: marked `wheel`
(deselect with `-m "not wheel"`), and skipped with ALERTD_TEST_OFFLINE=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from alertd import __version__
from tests.conftest import REDIS_URL, ROOT, free_port, wait_until

pytestmark = [
    pytest.mark.wheel,
    pytest.mark.timeout(600),
    pytest.mark.skipif(bool(os.environ.get("ALERTD_TEST_OFFLINE")), reason="ALERTD_TEST_OFFLINE: no PyPI"),
]

RULES = """
groups:
  - name: g
    rules:
      - alert: TaskFailed
        event: task-failed
        by: [task]
        annotations: {summary: "{{ labels.task }} failed {{ value | count }} times"}
"""


def clean_env() -> dict[str, str]:
    """No PYTHONPATH: the installed package must be what runs, not the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ALERTD_CONFIG", "VIRTUAL_ENV")}
    return env


def run(*argv: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean_env()
    )
    assert out.returncode == 0, (argv, out.stdout[-2000:], out.stderr[-3000:])
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel `make dist` built installed in it; its bin directory."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    tmp = tmp_path_factory.mktemp("wheel")
    # a copy of the checkout, so the build's own files (build/, *.egg-info) stay out of the tree
    src = tmp / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "var"),
    )
    run("make", "dist", f"PYTHON={sys.executable}", f"DIST={tmp / 'dist'}", cwd=src)
    (wheel,) = (tmp / "dist").glob("alertd-*.whl")
    run(sys.executable, "-m", "venv", tmp / "venv", cwd=tmp)
    run(tmp / "venv" / "bin" / "pip", "install", "--quiet", wheel, cwd=tmp)
    shutil.rmtree(src)  # nothing may come from the copy either
    return tmp / "venv" / "bin"


def test_the_installed_wheel_runs_from_anywhere(installed: Path, tmp_path: Path) -> None:
    assert run(installed / "alertd", "--version", cwd=tmp_path).stdout.strip() == f"alertd {__version__}"
    where = run(
        installed / "python",
        "-c",
        "import alertd, alertd.notify.template as t, alertd.ui as u; "
        "print(alertd.__file__); print(t.BUILTIN_DIR); print(u.STATIC)",
        cwd=tmp_path,
    ).stdout.split()
    site = str(installed.parent / "lib")
    assert all(p.startswith(site) for p in where), where  # the venv's package, not the checkout
    assert {p.name for p in Path(where[1]).glob("*.j2")} >= {"slack.j2", "email.j2", "generic.j2", "json.j2"}
    assert (Path(where[2]) / "index.html").is_file()


def test_the_installed_wheel_checks_a_config_with_builtin_templates(installed: Path, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "alertd.yaml").write_text(
        "rule_files: [rules.yaml]\n"
        "receivers:\n"
        "  - {name: chat, apprise: ['json://127.0.0.1:1/hook'], template: slack}\n"
        "  - {name: mail, apprise: ['json://127.0.0.1:1/mail'], template: email}\n"
        "route: {receiver: chat}\n"
    )
    out = run(installed / "alertd", "check", "alertd.yaml", cwd=tmp_path)
    assert out.stdout == "1 rules in 1 files and alertd.yaml: OK\n"


def test_the_installed_wheel_serves_its_page(installed: Path, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "alertd.yaml").write_text(
        f"broker: {REDIS_URL}\nstore: sqlite:///{tmp_path}/state.db\nrule_files: []\n"
        f"api: {{listen: '127.0.0.1:{port}'}}\n"
    )
    log = (tmp_path / "alertd.log").open("wb")
    proc = subprocess.Popen(
        [installed / "alertd", "-c", "alertd.yaml", "run"],
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=clean_env(),
    )
    try:

        def get(path: str) -> tuple[int, str]:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
                    return r.status, r.read().decode()
            except OSError:
                assert proc.poll() is None, (tmp_path / "alertd.log").read_text()
                return 0, ""

        wait_until(lambda: get("/healthz")[0] == 200, timeout=30, what="alertd up")
        status, page = get("/")
        assert status == 200 and "/ui/app.js" in page, page[:500]
        assert get("/ui/app.js")[0] == 200 and get("/ui/style.css")[0] == 200
        # the modules app.js imports are in the wheel too (charts are drawn by fmt.js: nothing vendored)
        assert [get(f"/ui/{m}.js")[0] for m in ("core", "fmt", "console")] == [200, 200, 200]
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
