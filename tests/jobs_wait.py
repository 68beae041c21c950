"""Pages start jobs in worker processes: tests wait for them through the database, as a second tab would."""

from __future__ import annotations

import time

from lib.job_worker import running_runs


def wait_for_jobs(engine, timeout: float = 60) -> None:
    """Return when no run is marked running any more (raise after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while running_runs(engine):
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs still running after {timeout} s: {running_runs(engine)}")
        time.sleep(0.1)


def settle(at, engine, timeout: float = 60):
    """Wait for the page's jobs, then run the page again (what the page's once-a-second refresh does)."""
    wait_for_jobs(engine, timeout)
    return at.run()
