"""Jobs in worker processes: migration 010, Cancel, stored previews, a dead worker goes stale (both databases)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from lib.errors import InputError, NotAllowed
from lib.job_plans import PlanUnusable, claim_plan, get_plan, why_unusable
from lib.job_worker import APPLY, PREVIEW, Progress, execute, refresh, save_upload, start_job
from lib.migrations import migrate, migrate_core
from lib.runs import get_run, list_runs, request_cancel, start_run, undo_run
from lib.worker_jobs import import_fingerprint
from tests.conftest import ROOT
from tests.jobs_wait import wait_for_jobs
from tests.test_excel_reader import sample
from tests.test_subscription_import import seed_sample_customers

KIND = "import-subscriptions"


def count(engine, table: str = "subscriptions") -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_010_keeps_runs_locks_and_undo_links(db_url, tmp_path):
    """Upgrading at 009: every run, its undo links and a held lock survive (SQLite rebuilds runs)."""
    from lib.db import get_engine

    engine = get_engine(db_url)
    before = tmp_path / "until-009"
    before.mkdir()
    for path in sorted((ROOT / "migrations").glob("*.sql")):
        if path.name < "010":
            (before / path.name).write_bytes(path.read_bytes())
    migrate(engine, before)
    with engine.begin() as conn:
        first = conn.execute(text("INSERT INTO runs (kind, status) VALUES ('a', 'succeeded') RETURNING id")).scalar_one()
        undo = conn.execute(text("INSERT INTO runs (kind, status, undoes_run_id) VALUES ('undo', 'succeeded', :r) "
                                 "RETURNING id"), {"r": first}).scalar_one()
        conn.execute(text("UPDATE runs SET undone_by_run_id = :u WHERE id = :r"), {"u": undo, "r": first})
        held = conn.execute(text("INSERT INTO runs (kind) VALUES ('b') RETURNING id")).scalar_one()
        conn.execute(text("INSERT INTO run_locks (kind, run_id, owner) VALUES ('b', :r, 'elsewhere:1')"), {"r": held})
        rows = conn.execute(text("SELECT id, kind, status, undone_by_run_id, undoes_run_id FROM runs ORDER BY id")).all()

    assert 10 in [f.version for f in migrate_core(engine)]
    with engine.begin() as conn:
        assert conn.execute(text("SELECT id, kind, status, undone_by_run_id, undoes_run_id FROM runs "
                                 "ORDER BY id")).all() == rows
        assert conn.execute(text("SELECT kind, run_id FROM run_locks")).all() == [("b", held)]
        conn.execute(text("UPDATE runs SET status = 'cancelled', cancel_requested_by = 'ann' WHERE id = :r"),
                     {"r": held})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("UPDATE runs SET status = 'paused' WHERE id = :r"), {"r": held})
    with pytest.raises(IntegrityError), engine.begin() as conn:  # the lock still points at a real run
        conn.execute(text("INSERT INTO run_locks (kind, run_id, owner) VALUES ('c', 999, 'x:1')"))


def test_cancel_is_asked_by_operators_of_running_runs(engine):
    run = start_run(engine, "x", user="ann")
    with pytest.raises(NotAllowed):
        request_cancel(engine, run.id, user="vic", role="viewer")
    assert request_cancel(engine, run.id, user="bob", role="operator")["cancel_requested_by"] == "bob"
    assert run.cancel_requested() == "bob"
    assert run.cancel("cancelled by bob") == "cancelled"
    with pytest.raises(InputError, match="is not running"):
        request_cancel(engine, run.id, user="bob", role="operator")


class CancelAfter(Progress):
    """Progress that presses Cancel once `rows` rows are written (as a person on another tab would)."""

    def __init__(self, run, rows: int):
        super().__init__(run)
        self.rows = rows

    def __call__(self, done: int, total: int, message: str = "") -> None:
        super().__call__(done, total, message)
        if 0 < done < total and done >= self.rows and not self.run.cancel_requested():
            request_cancel(self.run.engine, self.run.id, user="boss", role="admin")


def _preview(engine, monkeypatch, name="abonnementer-clean.xlsx", seed: bool = True) -> dict:
    if seed:
        seed_sample_customers(engine)
    path = save_upload(sample(name).read_bytes(), name)
    run_id = start_job(engine, KIND, PREVIEW, {"path": str(path), "file_name": name}, user="ann", role="operator")
    wait_for_jobs(engine)
    run = get_run(engine, run_id)
    assert run["status"] == "succeeded" and run["dry_run"], run
    return run


def test_preview_in_a_worker_stores_the_plan_and_apply_writes_it(engine, monkeypatch):
    preview = _preview(engine, monkeypatch)
    stored = get_plan(engine, preview["stats"]["plan_id"])
    assert stored["summary"]["created"] == 4 and len(stored["plan"]["rows"]) == 5
    assert why_unusable(stored, import_fingerprint(engine)) is None
    assert count(engine) == 0  # a preview writes nothing

    run_id = start_job(engine, KIND, APPLY, {"plan_id": stored["id"]}, user="ann", role="operator")
    wait_for_jobs(engine)
    run = get_run(engine, run_id)
    assert (run["status"], run["stats"]["created"], count(engine)) == ("succeeded", 4, 4)
    assert run["worker"] and run["worker"].split(":")[-1] != str(os.getpid())  # another process did it
    assert "applied as run" in why_unusable(get_plan(engine, stored["id"]), None)
    with pytest.raises(PlanUnusable):
        claim_plan(engine, stored["id"], run_id)


def test_a_stored_preview_expires_and_goes_stale_with_the_data(engine, monkeypatch):
    preview = _preview(engine, monkeypatch)
    stored = get_plan(engine, preview["stats"]["plan_id"], with_plan=False)
    from lib.customers import create_customer

    create_customer(engine, {"name": "Ny Kunde ApS"}, user="bob")
    assert why_unusable(stored, import_fingerprint(engine)) == "the data this preview read has changed since"
    monkeypatch.setenv("PLAN_TTL_MINUTES", "0")
    late = _preview(engine, monkeypatch, "abonnementer-messy.xlsx", seed=False)
    time.sleep(0.01)
    assert "expired" in why_unusable(get_plan(engine, late["stats"]["plan_id"]), None)
    run_id = start_job(engine, KIND, APPLY, {"plan_id": late["stats"]["plan_id"]}, user="ann", role="operator")
    wait_for_jobs(engine)
    assert "expired" in get_run(engine, run_id)["error"] and count(engine) == 0


def test_cancel_keeps_committed_chunks_and_undo_reverts_them(engine, monkeypatch):
    preview = _preview(engine, monkeypatch)
    run = start_run(engine, KIND, user="ann", parameters={"action": APPLY, "plan_id": preview["stats"]["plan_id"],
                                                          "chunk_rows": 1})
    import lib.worker_jobs as worker_jobs

    monkeypatch.setattr(worker_jobs, "Progress", lambda r: CancelAfter(r, 2))
    assert execute(engine, run.id) == "cancelled"
    done = get_run(engine, run.id)
    assert done["cancel_requested_by"] == "boss" and "cancelled by boss after" in done["error"]
    assert 0 < done["stats"]["created"] == count(engine) < 4
    undo = undo_run(engine, run.id, user="ann", role="operator")
    assert undo["rows_deleted"] == done["stats"]["created"] and count(engine) == 0


def test_a_worker_that_dies_goes_stale_and_the_next_start_proceeds(engine, monkeypatch):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    run = start_run(engine, KIND, user="ann")
    with engine.begin() as conn:  # as if `sleeper` were its worker
        owner = f"{socket.gethostname()}:{sleeper.pid}"
        conn.execute(text("UPDATE runs SET worker = :o WHERE id = :r"), {"o": owner, "r": run.id})
        conn.execute(text("UPDATE run_locks SET owner = :o WHERE run_id = :r"), {"o": owner, "r": run.id})
    run._end_heartbeat()
    assert refresh(engine, run.id)["status"] == "running"
    os.kill(sleeper.pid, signal.SIGKILL)
    sleeper.wait()
    assert refresh(engine, run.id)["status"] == "stale"
    again = start_run(engine, KIND, user="bob")
    assert again.finish() == "succeeded"
    assert [r["status"] for r in list_runs(engine, kind=KIND)] == ["succeeded", "stale"]


def test_cancel_command(engine, capsys):
    from lib.cli import main

    run = start_run(engine, KIND, user="ann")
    assert main(["cancel", str(run.id), "--json"]) == 0
    assert '"cancel_requested_by": "cli"' in capsys.readouterr().out
    assert run.cancel_requested() == "cli"
    run.cancel("cancelled by cli")
    assert main(["cancel", str(run.id)]) == 2
    assert "is not running (status cancelled)" in capsys.readouterr().err


@pytest.mark.parametrize("setting, expected_step", [("7", 7), ("0", 0), ("40", 19)])
def test_the_worker_runs_below_the_server_in_cpu_priority(setting, expected_step):
    """A worker lowers its own priority by JOB_WORKER_NICE (0-19) at its entry point; the server's stays."""
    code = ("import os; base = os.nice(0); from lib.job_worker import lower_priority; lower_priority(); "
            "print(base, os.nice(0))")
    env = {**os.environ, "JOB_WORKER_NICE": setting, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    base, now = int(out[0]), int(out[1])
    assert now == min(19, base + expected_step)
    assert os.nice(0) == base  # this process (the server's stand-in) was not touched
