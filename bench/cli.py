"""CLI start-up: wall time of the commands an operator types, and the heavy modules each loads.

Each command runs as a fresh process (as from a shell) several times; the median is printed with
whether celery, apprise, aiohttp, jinja2 or pydantic were imported. The silence and alert
commands talk to an address nobody listens on: what is timed is start-up, not a round trip.

    .venv/bin/python bench/cli.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("celery", "kombu", "apprise", "aiohttp", "jinja2", "pydantic")

CONFIG = """
broker: redis://127.0.0.1:6379/0
receivers:
  - name: oncall
    apprise: ["json://127.0.0.1:1/hook"]
route:
  receiver: oncall
  group_by: [alertname]
  routes:
    - matchers: ['severity="critical"']
      receiver: oncall
"""

# Prints the heavy top-level packages the command imported, after it ran.
PROBE = """
import atexit, sys
def _report():
    heavy = sorted({m.split('.')[0] for m in sys.modules} & set(%r))
    sys.stderr.write('HEAVY ' + ','.join(heavy) + '\\n')
atexit.register(_report)
from alertd.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 0
sys.exit(code)
"""


def unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def time_command(argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, str]:
    times = []
    heavy = ""
    exe = str(ROOT / ".venv" / "bin" / "alertd")
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([exe, *argv], env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    probe = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,), *argv], env=env, capture_output=True, text=True)
    for line in probe.stderr.splitlines():
        if line.startswith("HEAVY "):
            heavy = line[6:] or "-"
    return statistics.median(times), heavy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "alertd.yaml"
        cfg.write_text(CONFIG)
        env = {**os.environ, "ALERTD_CONFIG": str(cfg), "PYTHONPATH": str(ROOT)}
        url = unused_url()
        commands = [
            ["--version"],
            ["silence", "query", "--url", url],
            ["silence", "add", 'alertname="X"', "-c", "bench", "--url", url],
            ["alert", "query", "--url", url],
            ["silence", "query"],  # the API address read from the config file
            ["routes", "test", "alertname=X", "severity=critical"],
            ["check", str(ROOT / "rules")],
        ]
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
        for argv in commands:
            median, heavy = time_command(argv, args.runs, env)
            shown = " ".join(a if a != url else "--url <unused>" for a in argv).replace("--url --url", "--url")
            print(f"alertd {shown:60s} {median * 1000:6.0f} ms   imports: {heavy}")


if __name__ == "__main__":
    main()
