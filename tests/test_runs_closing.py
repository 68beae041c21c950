"""Every run closes on every path, and a live run is never declared dead (issue #15), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from lib.audit import insert_row, update_row
from lib.customers import CustomerInvalid, create_customer, update_customer
from lib.runs import RunBusy, get_run, job_run, list_runs, start_run
from lib.subscription_import import apply_plan, import_subscriptions
from tests.conftest import ROOT
from tests.test_excel_reader import write_xlsx
from tests.test_subscription_import import ADMIN, HEADER, seed_sample_customers


def lock_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM run_locks")).scalar_one()


def running(engine) -> list[int]:
    return [r["run_id"] for r in list_runs(engine) if r["status"] == "running"]


def add_customer(engine, name: str) -> int:
    with engine.begin() as conn:
        return insert_row(conn, "customers", {"name": name}, run_id=None, user="seed")


@pytest.mark.parametrize("error", [ValueError("bad value in row 7"), KeyboardInterrupt()])
def test_an_exception_in_the_body_fails_the_run_with_its_reason_and_what_was_committed(engine, error):
    a = add_customer(engine, "Nordlys ApS")
    with pytest.raises(type(error)), job_run(engine, "demo", user="ann", dry_run=False) as run:
        with engine.begin() as conn:  # committed: counted
            update_row(conn, "customers", a, {"city": "Aarhus"}, run_id=run.id, user="ann")
        with engine.begin() as conn:  # rolled back: not counted
            update_row(conn, "customers", a, {"zip": "8000"}, run_id=run.id, user="ann")
            raise error
    stored = get_run(engine, run.id)
    assert stored["status"] == "failed"
    assert stored["error"] == ("ValueError: bad value in row 7" if isinstance(error, ValueError)
                               else "interrupted (KeyboardInterrupt)")
    assert stored["stats"] == {"changes_committed": 1}
    assert lock_count(engine) == 0 and running(engine) == []
    start_run(engine, "demo", user="bob").finish()  # the lock is free


def test_a_database_error_fails_the_run_and_releases_the_lock(engine):
    a = add_customer(engine, "Nordlys ApS")
    b = add_customer(engine, "Blåbær IT")
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET cvr_number = '13585628' WHERE id = :id"), {"id": a})
    with pytest.raises(IntegrityError), job_run(engine, "demo", user="ann", dry_run=False) as run:
        with engine.begin() as conn:
            update_row(conn, "customers", b, {"cvr_number": "13585628"}, run_id=run.id, user="ann")
    stored = get_run(engine, run.id)
    assert stored["status"] == "failed" and stored["error"].startswith("IntegrityError: ")
    assert lock_count(engine) == 0


def test_a_customer_create_that_the_database_refuses_leaves_no_run_running(engine):
    """The issue's sequence: one create the database refuses must not block everyone's edits for 15 minutes."""
    if engine.dialect.name == "sqlite":
        ddl = ["CREATE TRIGGER refuse_name BEFORE INSERT ON customers WHEN NEW.name = 'Blokeret ApS' "
               "BEGIN SELECT RAISE(ABORT, 'value refused by the database'); END"]
    else:
        ddl = ["CREATE FUNCTION refuse_name() RETURNS trigger AS $$ BEGIN IF NEW.name = 'Blokeret ApS' THEN "
               "RAISE EXCEPTION 'value refused by the database'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
               "CREATE TRIGGER refuse_name BEFORE INSERT ON customers FOR EACH ROW EXECUTE FUNCTION refuse_name()"]
    with engine.begin() as conn:
        for statement in ddl:
            conn.execute(text(statement))
    with pytest.raises((DBAPIError, CustomerInvalid), match="value refused by the database"):
        create_customer(engine, {"name": "Blokeret ApS"}, user="ann")
    assert running(engine) == [] and lock_count(engine) == 0
    refused = list_runs(engine, kind="customer-edit")[0]
    assert refused["status"] == "failed" and "value refused by the database" in refused["error"]
    cid = create_customer(engine, {"name": "Næste Kunde ApS"}, user="bob")
    assert update_customer(engine, cid, {"city": "Vejle"}, user="bob") == {"city": (None, "Vejle")}


def test_a_failure_while_closing_still_releases_the_lock(engine):
    """Recording the end fails (a trigger stands in for a lost connection): the lock goes on a fresh connection."""
    if engine.dialect.name == "sqlite":
        ddl = ["CREATE TRIGGER refuse_success BEFORE UPDATE OF status ON runs WHEN NEW.status = 'succeeded' "
               "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"]
    else:
        ddl = ["CREATE FUNCTION refuse_success() RETURNS trigger AS $$ BEGIN "
               "IF NEW.status = 'succeeded' THEN RAISE EXCEPTION 'disk I/O error'; END IF; RETURN NEW; END $$ "
               "LANGUAGE plpgsql",
               "CREATE TRIGGER refuse_success BEFORE UPDATE ON runs FOR EACH ROW EXECUTE FUNCTION refuse_success()"]
    with engine.begin() as conn:
        for statement in ddl:
            conn.execute(text(statement))
    with pytest.raises(Exception, match="disk I/O error"), job_run(engine, "demo", user="ann", dry_run=False) as run:
        run.stats = {"created": 3}
    stored = get_run(engine, run.id)
    assert stored["status"] == "failed" and "recording the end (succeeded) failed" in stored["error"]
    assert lock_count(engine) == 0
    with job_run(engine, "demo", user="bob", dry_run=False) as again:
        again.fail("the next run can start")


def test_the_heartbeat_beats_while_the_job_does_nothing(engine, monkeypatch):
    monkeypatch.setenv("RUN_HEARTBEAT_SECONDS", "0.2")
    with job_run(engine, "demo", user="ann", dry_run=False) as run:
        first = get_run(engine, run.id)["heartbeat_at"]
        time.sleep(1.0)  # the job's own thread is busy elsewhere: no progress calls
        with engine.connect() as conn:
            lock_beat = conn.execute(text("SELECT heartbeat_at FROM run_locks WHERE run_id = :r"),
                                     {"r": run.id}).scalar_one()
        assert get_run(engine, run.id)["heartbeat_at"] > first
        assert str(lock_beat) > str(first)
    time.sleep(0.5)
    finished = get_run(engine, run.id)
    assert finished["status"] == "succeeded" and lock_count(engine) == 0
    assert not [t for t in threading.enumerate() if t.name == f"run-{run.id}-heartbeat"]


def test_a_run_marked_stale_that_finishes_later_stays_stale_with_a_note(engine):
    run = start_run(engine, "demo", user="ann")
    with engine.begin() as conn:  # what another replica does when it decides the run is dead
        conn.execute(text("UPDATE runs SET status = 'stale', error = 'marked stale: no heartbeat' WHERE id = :r"),
                     {"r": run.id})
        conn.execute(text("DELETE FROM run_locks WHERE run_id = :r"), {"r": run.id})
    other = start_run(engine, "demo", user="bob")  # the next run took over
    assert run.finish({"created": 2}) == "stale"
    stored = get_run(engine, run.id)
    assert stored["status"] == "stale" and stored["stats"] == {"created": 2}
    assert "marked stale: no heartbeat; the job was still alive and ended 'succeeded' afterwards" == stored["error"]
    assert lock_count(engine) == 1  # the new holder's lock is untouched
    other.finish()


def slow_import(engine, tmp_path, release: threading.Event, started: threading.Event) -> tuple[threading.Thread, list]:
    """An import apply on a thread that waits (alive, heartbeating) at its first progress report."""
    seed_sample_customers(engine)
    rows = [HEADER, [1001, "Nordlys", None, "600001", "Backup", 1, 100, "Måned", "01-01-2024", "Aktiv"]]
    path = write_xlsx(tmp_path / "x.xlsx", {"Abonnementer": rows})
    plan, _ = import_subscriptions(engine, path)
    out: list = []

    def progress(_done, _total, _message):
        started.set()
        release.wait(60)

    def work():
        out.append(apply_plan(engine, plan, on_progress=progress, **ADMIN))

    thread = threading.Thread(target=work)
    thread.start()
    assert started.wait(30)
    return thread, out


def test_a_second_import_cannot_start_while_the_first_is_alive(engine, tmp_path, monkeypatch):
    """The issue's sequence with RUN_STALE_SECONDS=2: the second import (CLI, --json) is refused, no duplicates."""
    monkeypatch.setenv("RUN_STALE_SECONDS", "2")
    release, started = threading.Event(), threading.Event()
    thread, out = slow_import(engine, tmp_path, release, started)
    try:
        time.sleep(3)  # longer than RUN_STALE_SECONDS
        done = subprocess.run([sys.executable, "manage.py", "import-subscriptions", str(tmp_path / "x.xlsx"),
                               "--apply", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT), "HUB_CLI_ROLE": "operator"})
        assert done.returncode == 2, done.stderr
        assert "already running" in json.loads(done.stdout)["error"]
        # a replica on another host judges by the heartbeat, which the first import's own thread keeps fresh
        with engine.begin() as conn:
            conn.execute(text("UPDATE run_locks SET owner = 'replica-b:4242'"))
        time.sleep(3)
        with pytest.raises(RunBusy, match="already running"):
            start_run(engine, "import-subscriptions", user="bob")
    finally:
        release.set()
        thread.join(60)
    assert out and out[0]["created"] == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 1
    assert [r["status"] for r in list_runs(engine, kind="import-subscriptions")] == ["succeeded"]


SIGTERM_JOB = """
import signal, sys, time
from lib.cli import main, raise_terminated
from lib.db import get_engine
from lib.runs import job_run

signal.signal(signal.SIGTERM, raise_terminated)  # what manage.py does
with job_run(get_engine(), "demo", user="cron", dry_run=False) as run:
    print(run.id, flush=True)
    while True:
        time.sleep(0.05)
"""


def test_sigterm_on_the_command_line_fails_the_run_and_releases_the_lock(engine):
    proc = subprocess.Popen([sys.executable, "-c", SIGTERM_JOB], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    run_id = int(proc.stdout.readline())
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    stored = get_run(engine, run_id)
    assert stored["status"] == "failed" and stored["error"] == "terminated by signal 15"
    assert lock_count(engine) == 0


def test_manage_py_turns_sigterm_into_a_failed_run():
    source = (ROOT / "manage.py").read_text()
    assert "signal.signal(signal.SIGTERM, raise_terminated)" in source
