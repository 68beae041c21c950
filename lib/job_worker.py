"""Jobs run in a worker process: the page records the run and returns at once; the worker does the work.

The worker is `python -m lib.job_worker RUN_ID`, started in its own session (not a thread of the Streamlit
server, whose one interpreter serves every person), so a reload, another page or a closed tab does not stop it.
It writes progress to the run row (any tab, any replica reads it), asks between chunks whether someone pressed
Cancel, and closes the run on every path: succeeded, stopped (an outside service), cancelled, failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.audit import utcnow
from lib.config import PROJECT_ROOT, get_settings
from lib.db import write_transaction
from lib.errors import HubError, InputError, ServiceError
from lib.roles import Actor, require_role
from lib.runs import (
    RUN_COLUMNS,
    Run,
    RunCancelled,
    _decode_run,
    adopt_run,
    get_run,
    hand_over,
    lock_is_stale,
    record_preview,
    start_run,
)

PREVIEW, APPLY = "preview", "apply"
PROGRESS_SECONDS = 0.5  # progress rows at most this often (the pages poll once a second)

JobStep = Callable[[Engine, Run, dict], dict]


@dataclass(frozen=True)
class WorkerJob:
    """What the worker can run for one kind: a preview (stores a plan) and an apply; both return the result.

    Without steps the kind's job on the contract (lib.jobs.registry) is applied through the job runner, which
    adopts the run, checks Cancel between chunks and closes the run itself.
    """

    kind: str
    role: str
    preview: JobStep | None = None
    apply: JobStep | None = None


_JOBS: dict[str, WorkerJob] = {}


def register(job: WorkerJob) -> WorkerJob:
    _JOBS[job.kind] = job
    return job


def worker_job(kind: str) -> WorkerJob:
    # both, always: a page may have imported one of them already (registering its steps only)
    import lib.worker_jobs  # noqa: F401 - registers the core jobs
    import lib.worker_jobs_services  # noqa: F401 - registers the previews that call outside services
    if kind in _JOBS:
        job = _JOBS[kind]
        if job.apply is None:  # applied by the job runner: the role is the job's own
            from lib.jobs.registry import get_job

            job = WorkerJob(kind, get_job(kind).required_role, job.preview)
        return job
    from lib.jobs.registry import get_job

    return WorkerJob(kind, get_job(kind).required_role)


def jobs_dir() -> Path:
    path = Path(get_settings().jobs_dir)
    return path if path.is_absolute() else PROJECT_ROOT / path


def save_upload(data: bytes, file_name: str) -> Path:
    """Keep an uploaded file where the worker can read it: JOBS_DIR/uploads/<uuid><suffix>."""
    folder = jobs_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}{Path(file_name).suffix.lower()}"
    path.write_bytes(data)
    return path


def start_job(engine: Engine, kind: str, action: str, params: dict, *, user: str, role: str) -> int:
    """Record the run (apply takes the per-kind lock: RunBusy while another is alive) and start its worker."""
    job = worker_job(kind)
    require_role(role, job.role if action == APPLY else "operator", f"{action} {kind}")
    parameters = {"action": action, "role": role, **params}
    if action == PREVIEW:
        if job.preview is None:
            raise InputError(f"{kind} has no preview that runs in a worker")
        run = record_preview(engine, kind, user=user, parameters=parameters)
    else:
        run = start_run(engine, kind, user=user, parameters=parameters)
    try:
        launch(run.id)
    except (OSError, subprocess.SubprocessError) as exc:
        run.fail(f"the worker process could not start: {exc}")
        raise HubError(f"the worker process could not start: {exc}") from exc
    hand_over(run)  # the worker beats from now on; if it dies, the run goes stale
    return run.id


def refresh(engine: Engine, run_id: int) -> dict:
    """The run as stored; a running one whose worker process is gone (or silent too long) is marked stale first."""
    run = get_run(engine, run_id)
    if run["status"] != "running" or not run["worker"]:
        return run
    stale_after = timedelta(seconds=get_settings().run_stale_seconds)
    why = lock_is_stale({"owner": run["worker"], "heartbeat_at": run["heartbeat_at"], "run_id": run_id}, stale_after)
    if why:
        with write_transaction(engine) as conn:
            conn.execute(text("UPDATE runs SET status = 'stale', finished_at = :now, error = :e "
                              "WHERE id = :id AND status = 'running'"),
                         {"now": utcnow(), "e": f"marked stale: {why}", "id": run_id})
            conn.execute(text("DELETE FROM run_locks WHERE run_id = :id"), {"id": run_id})
        run = get_run(engine, run_id)
    return run


def launch(run_id: int) -> None:
    """Start the worker for `run_id` detached: a short-lived launcher starts it in a new session and exits, so
    the worker is nobody's child in the server (no zombie) and outlives the script run that started it."""
    logs = jobs_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "lib.job_worker", str(run_id)]
    launcher = ("import subprocess, sys; log = open(sys.argv[1], 'ab'); "
                "subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log, "
                "start_new_session=True, close_fds=True)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", launcher, str(logs / f"run-{run_id}.log"), *command], cwd=PROJECT_ROOT,
                   env=env, check=True, timeout=30, stdin=subprocess.DEVNULL)


class Progress:
    """The job's progress callback: writes the run row at most every PROGRESS_SECONDS (and the last step).

    `cancel_every`: also ask for Cancel at most this often, from the callback itself (a preview that spends its
    time waiting on an outside service has no chunks to ask between).
    """

    def __init__(self, run: Run, *, cancel_every: float | None = None):
        self.run = run
        self.cancel_every = cancel_every
        self._last = 0.0
        self._asked = time.monotonic()

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS or (total and done >= total):
            self._last = now
            self.run.progress(done, total, message)
        if self.cancel_every is not None and now - self._asked >= self.cancel_every:
            self._asked = now
            self.check_cancel()

    def check_cancel(self) -> None:
        """Raise RunCancelled when someone pressed Cancel (called between chunks)."""
        who = self.run.cancel_requested()
        if who:
            raise RunCancelled(f"cancelled by {who}")


def execute(engine: Engine, run_id: int) -> str:
    """Run the job recorded as `run_id` in this process; returns the run's final status."""
    record = get_run(engine, run_id)
    params = record["parameters"]
    if params.get("action") == APPLY and worker_job(record["kind"]).apply is None:
        return _execute_on_runner(engine, record)
    run = adopt_run(engine, run_id)
    try:
        job = worker_job(run.kind)
        step = job.preview if params.get("action") == PREVIEW else job.apply
        if step is None:
            raise InputError(f"{run.kind} has no {params.get('action')} step")
        result = step(engine, run, params)
    except RunCancelled as exc:
        run.cancel(str(exc), getattr(exc, "stats", None))
    except ServiceError as exc:
        run.stop(str(exc), getattr(exc, "stats", None))
    except BaseException as exc:  # noqa: BLE001 - every path closes the run
        run.fail(str(exc) or type(exc).__name__, getattr(exc, "stats", None))
        if not isinstance(exc, HubError):
            raise
    else:
        if get_run(engine, run_id)["status"] == "running":
            run.finish(result)
    return get_run(engine, run_id)["status"]


def _execute_on_runner(engine: Engine, record: dict) -> str:
    """Apply a contract job through the runner (it adopts and closes the run); keep its error rows on the run."""
    from lib.jobs import runner

    run_id, params = record["run_id"], record["parameters"]
    actor = Actor(record["triggered_by"], params.get("role", "viewer"))
    reason = "the worker ended without closing the run"
    try:
        _plan, payload = runner.apply(record["kind"], params.get("params") or {}, params.get("approved") or [],
                                      actor, run_id=run_id, engine=engine)
    except HubError as exc:  # the runner recorded why on the run, unless it refused before taking it over
        reason = str(exc)
    else:
        stored = get_run(engine, run_id)
        with write_transaction(engine) as conn:  # the page shows the rows that were skipped and why
            conn.execute(text("UPDATE runs SET stats = :s WHERE id = :id"),
                         {"s": json.dumps({**stored["stats"], "errors": payload.get("errors", [])[:1000]},
                                          default=str, ensure_ascii=False), "id": run_id})
    finally:
        if get_run(engine, run_id)["status"] == "running":  # anything the runner could not close
            with write_transaction(engine) as conn:
                conn.execute(text("UPDATE runs SET status = 'failed', finished_at = :now, error = :e "
                                  "WHERE id = :id AND status = 'running'"),
                             {"now": utcnow(), "e": reason, "id": run_id})
                conn.execute(text("DELETE FROM run_locks WHERE run_id = :id"), {"id": run_id})
    return get_run(engine, run_id)["status"]


def running_runs(engine: Engine) -> list[dict]:
    """Every run still marked running, newest first."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' ORDER BY id DESC")).mappings()
        return [_decode_run(dict(r)) for r in rows]


def latest_run(engine: Engine, kind: str, *, dry_run: bool, user: str | None = None) -> dict | None:
    """The newest preview (dry_run) or apply run of `kind`, optionally only `user`'s: what a page comes back to."""
    sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE kind = :k AND dry_run = :d"
    if user is not None:
        sql += " AND triggered_by = :u"
    with engine.connect() as conn:
        row = conn.execute(text(sql + " ORDER BY id DESC LIMIT 1"), {"k": kind, "d": dry_run, "u": user}).mappings().first()
    return _decode_run(dict(row)) if row else None


def lower_priority() -> int:
    """Run this worker JOB_WORKER_NICE steps below the server in CPU priority; returns the niceness now.

    Called only at the worker's entry point (its own process): a preview or apply then takes the cores when
    nobody's page needs them, and people's page loads come first when they do.
    """
    step = max(0, min(19, get_settings().job_worker_nice))
    return os.nice(step)


def main(argv: list[str] | None = None) -> int:
    from lib.db import open_database
    from lib.logging_setup import configure_logging

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m lib.job_worker RUN_ID", file=sys.stderr)
        return 2
    configure_logging()
    lower_priority()
    status = execute(open_database(), int(args[0]))
    return 0 if status in ("succeeded", "cancelled") else 1


if __name__ == "__main__":
    from lib.job_worker import main as worker_main  # the imported module holds the registered jobs, not __main__

    sys.exit(worker_main())
