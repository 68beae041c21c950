"""Two Streamlit replicas on one PostgreSQL: a job started on one is watched live on the other, the per-kind
lock holds across them, and when the process running the job dies its run goes stale and the next start
(on the other replica) proceeds."""

from __future__ import annotations

import os
import re
import signal

import pytest

from bench.bench_import import generate_export, seed_customers
from lib.job_worker import latest_run
from lib.runs import RunBusy, get_run, start_run
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures
from tests.test_jobs_worker_browser import Busy, apply_run_with_progress, progress_text, subscriptions, wait_until

ROWS, CUSTOMERS, KIND = 6_000, 300, "import-subscriptions"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_replicas_share_progress_lock_and_stale_runs(engine, tmp_path, streamlit_server,  # noqa: F811
                                                         browser_page):  # noqa: F811
    export = tmp_path / "abonnementer-6k.xlsx"
    generate_export(export, ROWS, CUSTOMERS)
    seed_customers(engine, CUSTOMERS)
    env = {"RUN_STALE_SECONDS": "6", "RUN_HEARTBEAT_SECONDS": "1"}
    replica_a, replica_b = streamlit_server(env), streamlit_server(env)
    busy = Busy(engine)

    page_a = browser_page(replica_a, "import_subscriptions")
    page_a.locator('input[type="file"]').set_input_files(str(export))
    page_a.locator("button", has_text="Apply (").wait_for(timeout=60_000)
    try:
        page_a.locator("button", has_text="Apply (").click()
        run = apply_run_with_progress(engine)
        busy.hold()  # the worker waits before its next chunk
        page_b = browser_page(replica_b, "runs")  # B sees A's job, live
        assert f"Run {run['run_id']} ({KIND}" in progress_text(page_b)
        with pytest.raises(RunBusy):  # the lock holds across processes
            start_run(engine, KIND, user="bob")
        page_b2 = browser_page(replica_b, "import_subscriptions")
        page_b2.get_by_text("Applying").wait_for()  # B offers no second import meanwhile

        worker_pid = int(get_run(engine, run["run_id"])["worker"].rpartition(":")[2])
        os.kill(worker_pid, signal.SIGKILL)  # the process running the job dies
    finally:
        busy.release()
    wait_until(lambda: get_run(engine, run["run_id"])["status"] == "stale", timeout=30, every=0.2)
    dead = get_run(engine, run["run_id"])
    assert "gone" in dead["error"]
    kept = subscriptions(engine)
    assert kept > 0  # the chunks committed before it died stay (undo can revert them)

    page_b2.reload()
    page_b2.get_by_test_id("stApp").wait_for()
    wait_idle(page_b2)
    page_b2.get_by_role("button", name="Preview again").click()
    page_b2.locator("button", has_text="Apply (").wait_for(timeout=60_000)
    page_b2.locator("button", has_text="Apply (").click()
    wait_until(lambda: (latest_run(engine, KIND, dry_run=False) or {}).get("status") == "succeeded", timeout=60,
               every=0.2)
    again = latest_run(engine, KIND, dry_run=False)
    assert again["run_id"] > run["run_id"] and again["worker"] != dead["worker"]
    page_b2.get_by_text(re.compile(rf"^Applied as run {again['run_id']}:")).wait_for(timeout=30_000)
    assert subscriptions(engine) == kept + again["stats"]["created"]
