"""Playwright: a 30,000-row import runs on the server. Leaving the page, reloading and coming back do not stop it;
the Runs page shows its progress moving; Cancel stops it at the next chunk and undo reverts what it wrote.

The test decides when the worker's chunks may go on by keeping the database busy (`Busy`: a transaction of
someone else that the worker's next chunk waits for), so nothing depends on how fast this machine is.
"""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
from sqlalchemy import text

from bench.bench_import import generate_export, seed_customers
from lib.formatting import number
from lib.job_worker import latest_run
from lib.runs import get_run
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures

ROWS, CUSTOMERS = 30_000, 2_000
CREATES = 28_750  # what the generated export creates against the seeded customers (the preview says so too)
KIND = "import-subscriptions"


@pytest.fixture(scope="module")
def export_30k(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "abonnementer-30k.xlsx"
    generate_export(path, ROWS, CUSTOMERS)
    return path


class Busy:
    """Someone else's open write transaction: the worker's next chunk waits until `release()`."""

    def __init__(self, engine):
        self.engine = engine
        self.conn = None
        self.tx = None

    def hold(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self.conn = sqlite3.connect(self.engine.url.database, timeout=30, isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn = self.engine.connect()
            self.tx = self.conn.begin()
            self.conn.execute(text("LOCK TABLE subscriptions IN EXCLUSIVE MODE"))

    def release(self) -> None:
        if self.conn is None:
            return
        if self.tx is not None:
            self.tx.commit()
        else:
            self.conn.execute("COMMIT")
        self.conn.close()
        self.conn = self.tx = None


def subscriptions(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()


def wait_until(check, timeout: float = 60, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"not reached in {timeout} s")


def apply_run_with_progress(engine) -> dict:
    """The apply run, once its first chunk is committed."""
    def check():
        run = latest_run(engine, KIND, dry_run=False)
        return run if run and (run["progress_done"] or 0) > 0 else None
    return wait_until(check)


def cancel_from_the_page(page, engine, run_id: int) -> None:
    """Press Cancel as a person would: once the page is idle, and again if the first press was not taken. The
    button sits in a fragment that reruns every second; under CI's load a press during a rerun was lost once."""
    for _ in range(2):
        wait_idle(page)
        page.get_by_role("button", name="Cancel").click()
        try:
            wait_until(lambda: get_run(engine, run_id)["cancel_requested_by"], timeout=10, every=0.1)
            return
        except TimeoutError:
            continue
    raise AssertionError(f"Cancel on the page never reached run {run_id}")


def upload_and_preview(page, path) -> None:
    page.locator('input[type="file"]').set_input_files(str(path))
    page.get_by_role("button", name=f"Apply ({number(CREATES)} change(s))").wait_for(timeout=90_000)


def nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title).click()
    page.wait_for_timeout(300)


def progress_text(page) -> str:
    label = page.get_by_test_id("stProgress").first
    label.wait_for()
    return label.inner_text()


def test_apply_goes_on_while_away_and_after_a_reload(engine, export_30k, streamlit_server, browser_page):  # noqa: F811
    seed_customers(engine, CUSTOMERS)
    busy = Busy(engine)
    page = browser_page(streamlit_server(), "import_subscriptions")
    upload_and_preview(page, export_30k)
    try:
        page.get_by_role("button", name=f"Apply ({number(CREATES)} change(s))").click()
        run = apply_run_with_progress(engine)
        busy.hold()  # the worker waits before its next chunk
        nav(page, "Runs")
        first = progress_text(page)
        assert f"Run {run['run_id']} ({KIND}" in first and "of 30.002" in first, first
        busy.release()
        wait_until(lambda: get_run(engine, run["run_id"])["progress_done"] > run["progress_done"], timeout=30)
        busy.hold()
        wait_until(lambda: progress_text(page) != first, timeout=15, every=0.2)  # moving, seen on the Runs page
        page.reload()
        page.get_by_test_id("stApp").wait_for()
        assert re.search(r"of 30\.002", progress_text(page))  # a reload stops nothing
        assert get_run(engine, run["run_id"])["status"] == "running"
    finally:
        busy.release()
    nav(page, "Import subscriptions")
    page.get_by_text(f"Applied as run {run['run_id']}: {number(CREATES)} created").wait_for(timeout=120_000)
    wait_idle(page)
    assert page.get_by_test_id("stMetric").filter(has_text="Left unchanged").first.is_visible()  # the statistics
    assert subscriptions(engine) == CREATES
    assert get_run(engine, run["run_id"])["status"] == "succeeded"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite: tests/test_job_worker.py (lib level)
def test_cancel_keeps_the_written_chunks_and_undo_reverts_them(engine, export_30k, streamlit_server,  # noqa: F811
                                                               browser_page):  # noqa: F811
    seed_customers(engine, CUSTOMERS)
    busy = Busy(engine)
    base = streamlit_server()
    page = browser_page(base, "import_subscriptions")
    upload_and_preview(page, export_30k)
    try:
        page.get_by_role("button", name=f"Apply ({number(CREATES)} change(s))").click()
        run = apply_run_with_progress(engine)
        busy.hold()
        cancel_from_the_page(page, engine, run["run_id"])
        page.get_by_text("Cancel requested by local-admin").wait_for()
    finally:
        busy.release()
    page.get_by_text(f"Run {run['run_id']} was cancelled by local-admin after").wait_for(timeout=60_000)
    done = get_run(engine, run["run_id"])
    assert done["status"] == "cancelled"
    written = subscriptions(engine)
    assert 0 < written < CREATES and done["stats"]["created"] == written

    runs = browser_page(base, f"runs?run={run['run_id']}")
    runs.get_by_text(re.compile(f"I want to revert the .* change\\(s\\) of run {run['run_id']}")).click()
    runs.get_by_role("button", name="Undo run").click()
    runs.get_by_text(f"Run {run['run_id']} undone as run").wait_for(timeout=60_000)
    assert subscriptions(engine) == 0
