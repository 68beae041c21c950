"""Jobs from cron on several replicas: the run lock holds across processes, a killed run goes stale.

Every test runs real processes against one database (PostgreSQL and SQLite): a holder script takes the run
lock with lib.runs.start_run and keeps it until a release file appears, so the order of events is fixed by
the test, not by timing.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from lib.audit import insert_row
from lib.cli import build_parser
from lib.runs import get_run, list_runs, start_run
from lib.sandbox import running_sandbox
from tests.conftest import ROOT

HOLDER = """
import sys, time
from pathlib import Path
from lib.cli import error_line
from lib.db import get_engine
from lib.errors import HubError
from lib.runs import start_run

kind, user, go, release, heartbeat = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
engine = get_engine()
print("ready", flush=True)
while not go.exists():
    time.sleep(0.02)
try:
    run = start_run(engine, kind, user=user)
except HubError as exc:
    error_line(str(exc))
    sys.exit(exc.exit_code)
print(f"started {run.id}", flush=True)
step = 0
while not release.exists():
    if heartbeat == "yes":
        step += 1
        run.progress(step, 0, "working")
    time.sleep(0.1)
run.finish({"steps": step})
print("finished", flush=True)
"""


class Holder:
    """One process running HOLDER; `go` and `release` are files the test creates."""

    def __init__(self, tmp: Path, kind: str, user: str, go: Path, *, heartbeat: bool = False, env: dict | None = None):
        self.release = tmp / f"release-{user}"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, user, str(go), str(self.release), "yes" if heartbeat else "no"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def line(self) -> str:
        return self.proc.stdout.readline().strip()

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        self.release.touch()
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL: no finally, no atexit, the lock row stays behind
        self.proc.communicate(timeout=30)  # reaped, so the pid is really gone (not a zombie)


@pytest.fixture
def holders(tmp_path, engine):
    started: list[Holder] = []

    def make(kind: str, user: str, go: Path | None = None, **kwargs) -> Holder:
        holder = Holder(tmp_path, kind, user, go or tmp_path / f"go-{user}", **kwargs)
        started.append(holder)
        return holder

    yield make
    for h in started:
        if h.proc.poll() is None:
            h.proc.kill()
            h.proc.communicate(timeout=30)


def test_two_processes_start_the_same_job_at_once_and_exactly_one_runs(engine, holders, tmp_path):
    go = tmp_path / "go"
    a, b = holders("economic-relink", "cron-a", go), holders("economic-relink", "cron-b", go)
    assert a.line() == "ready" and b.line() == "ready"
    go.touch()  # both call start_run now
    a_first = a.line()  # "started N", or "" when a was refused and exited
    winner, loser = (a, b) if a_first.startswith("started") else (b, a)
    if winner is b:
        assert b.line().startswith("started")
    _, loser_err = loser.proc.communicate(timeout=60)
    assert loser.proc.returncode == 2
    assert "already running" in loser_err and len(loser_err.strip().splitlines()) == 1
    winner_code, winner_out, _ = winner.finish()
    assert winner_code == 0 and "finished" in winner_out
    runs = list_runs(engine, kind="economic-relink")
    assert [r["status"] for r in runs] == ["succeeded"]
    assert runs[0]["triggered_by"] == ("cron-a" if winner is a else "cron-b")
    assert f"run {runs[0]['run_id']}" in loser_err


def test_a_killed_run_is_marked_stale_and_the_next_run_proceeds(engine, holders):
    first = holders("economic-relink", "cron-1")
    assert first.line() == "ready"
    first.release.parent.joinpath("go-cron-1").touch()
    old_id = int(first.line().split()[1])
    first.kill9()
    assert get_run(engine, old_id)["status"] == "running"  # nothing closed it: the process just died

    second = holders("economic-relink", "cron-2")
    assert second.line() == "ready"
    second.release.parent.joinpath("go-cron-2").touch()
    started = second.line()
    assert started.startswith("started"), second.proc.stderr.read() if second.proc.poll() is not None else started
    code, _, _ = second.finish()
    assert code == 0
    old = get_run(engine, old_id)
    assert old["status"] == "stale" and "is gone" in old["error"] and old["finished_at"] is not None
    assert get_run(engine, int(started.split()[1]))["status"] == "succeeded"


def test_a_replica_that_stopped_heartbeating_goes_stale_after_run_stale_seconds(engine, holders, tmp_path):
    """On another host the pid cannot be checked: only the heartbeat tells, after RUN_STALE_SECONDS."""
    beating = holders("crm-sync", "replica-a", heartbeat=True)
    silent = holders("cvr-lookup", "replica-b", env={"RUN_HEARTBEAT_SECONDS": "3600"})  # as if frozen
    for h, user in ((beating, "replica-a"), (silent, "replica-b")):
        assert h.line() == "ready"
        (tmp_path / f"go-{user}").touch()
    beating_id, silent_id = int(beating.line().split()[1]), int(silent.line().split()[1])
    with engine.begin() as conn:  # as if both ran on another machine
        conn.execute(text("UPDATE run_locks SET owner = 'replica-host-' || kind || :pid"), {"pid": ":4242"})
    time.sleep(3)
    late = {}
    for kind, user in (("crm-sync", "late-a"), ("cvr-lookup", "late-b")):
        late[kind] = holders(kind, user, env={"RUN_STALE_SECONDS": "2"})
        assert late[kind].line() == "ready"
        (tmp_path / f"go-{user}").touch()
    # the heartbeating run is alive: refused; the silent one is stale: taken over
    _, err = late["crm-sync"].proc.communicate(timeout=60)
    assert late["crm-sync"].proc.returncode == 2 and "already running" in err and f"run {beating_id}" in err
    assert late["cvr-lookup"].line().startswith("started")
    assert late["cvr-lookup"].finish()[0] == 0
    silent_run = get_run(engine, silent_id)
    assert silent_run["status"] == "stale" and "no heartbeat since" in silent_run["error"]
    assert get_run(engine, beating_id)["status"] == "running"
    assert beating.finish()[0] == 0 and get_run(engine, beating_id)["status"] == "succeeded"
    silent.kill9()


def test_the_command_line_refuses_a_busy_job_with_exit_2(engine, holders, tmp_path):
    """`manage.py undo` takes the same kind of run lock as every job: busy → exit 2, one line, nothing done."""
    with engine.begin() as conn:
        customer = insert_row(conn, "customers", {"name": "Nordlys ApS"}, run_id=None, user="seed")
    job = start_run(engine, "demo", user="ann")
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET city = 'Aarhus' WHERE id = :id"), {"id": customer})
    job.finish()
    holder = holders("undo", "someone-else")
    assert holder.line() == "ready"
    (tmp_path / "go-someone-else").touch()
    assert holder.line().startswith("started")
    done = subprocess.run([sys.executable, "manage.py", "undo", str(job.id)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "already running" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert get_run(engine, job.id)["undone_by_run_id"] is None
    assert holder.finish()[0] == 0


def test_economic_relink_from_cron_is_refused_while_one_runs(engine, holders, tmp_path):
    """The documented crontab line, against the sandbox, while another replica holds the economic-relink lock."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    if "economic-relink" not in commands:
        pytest.skip("manage.py economic-relink is not built yet")
    holder = holders("economic-relink", "replica-a")
    assert holder.line() == "ready"
    (tmp_path / "go-replica-a").touch()
    assert holder.line().startswith("started")
    with running_sandbox() as sandbox:
        done = subprocess.run([sys.executable, "manage.py", "economic-relink", "--apply"], cwd=ROOT,
                              env={**os.environ, **sandbox.env(), "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "already running" in done.stderr
    assert holder.finish()[0] == 0
    assert [r["status"] for r in list_runs(engine, kind="economic-relink")] == ["succeeded"]


def test_lock_owner_names_host_and_process(engine):
    run = start_run(engine, "demo", user="ann")
    with engine.connect() as conn:
        owner = conn.execute(text("SELECT owner FROM run_locks WHERE run_id = :r"), {"r": run.id}).scalar()
    assert owner == f"{socket.gethostname()}:{os.getpid()}"
    run.finish()
