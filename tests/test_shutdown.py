"""`alertd run` exits at once on SIGTERM, even in the middle of a broker sample: the sampler's
inspect broadcasts wait their timeout (a second each) in a thread, and the process used to wait
for that thread before exiting (2 s and more, on every stop and restart)."""

from __future__ import annotations

import signal
import time

from tests.daemon_fixtures import Deployment


def test_sigterm_mid_sample_exits_at_once(deployment: Deployment) -> None:
    # the setup's sampler: a round every 2 s, inspect on with its 1 s timeout, and no worker on
    # this deployment to answer: each round waits out both broadcasts, so one is always under way
    daemon = deployment.alertd()
    time.sleep(1.5)
    started = time.monotonic()
    daemon.kill(signal.SIGTERM)
    took = time.monotonic() - started
    assert daemon.proc.returncode == 0
    assert took < 1.2, f"alertd took {took:.2f}s to exit on SIGTERM"
