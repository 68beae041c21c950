"""The one runner every job goes through: role, run record, lock, progress, cancellation, savepoints, payload.

Callable from any process by job kind and JSON-serialisable parameters:

    plan, payload = runner.preview("cvr-lookup", {"limit": 10}, actor)
    plan, payload = runner.apply("cvr-lookup", {"limit": 10}, ["12:12345678"], actor)

Guarantees (docs/JOBS.md):
- the actor's role is checked before anything is read or written (NotAllowed, exit 2);
- an apply is one run of the job's kind (lib.runs): the per-kind lock across processes, a heartbeat with
  every progress report, and the run closed on every path — succeeded, stopped (an outside service
  stopped it: what was written is kept), cancelled (`cancel_check` said so: completed chunks are kept,
  undo reverts them) or failed;
- rows are written in chunks of `job.chunk_rows`, one transaction each, every row isolated by a SAVEPOINT:
  a row whose write raises RowError or IntegrityError is rolled back alone, reported in `errors` and
  skipped; the run goes on and earlier chunks stay committed (a chunk is tried in one savepoint first and
  written again row by row, a savepoint each, only when one of its rows fails);
- approvals for keys the plan does not hold are reported the same way for every job: an error row
  "approved proposal K is not in the plan (any more); nothing written";
- a plan stopped by an outside service with nothing to write stores no run (run_id null);
- clients the job registered with `ctx.closing` are closed on every path.
The payload is the job's JSON object (interface.md); lib/commands/ prints it and picks the exit code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from lib.db import open_database
from lib.errors import RowError, ServiceError
from lib.jobs.contract import NOT_IN_PLAN, ApplyOutcome, Job, JobCancelled, JobContext, Plan, ProgressCallback
from lib.jobs.registry import get_job, require_enabled
from lib.roles import Actor, require_role
from lib.runs import Run, adopt_run, job_run


def preview(kind: str, params: dict | None, actor: Actor, *, approved: Iterable[str] = (),
            engine: Engine | None = None, on_progress: ProgressCallback | None = None,
            cancel_check: Callable[[], bool] | None = None, job: Job | None = None) -> tuple[Plan, dict]:
    """Plan and check every row an apply with `approved` would write; writes nothing, stores no run."""
    job = job or get_job(kind)
    engine = engine or open_database()
    require_enabled(engine, job.kind)
    ctx = JobContext(engine, actor, dry_run=True, on_progress=on_progress, cancel_check=cancel_check)
    try:
        job.check(ctx, **(params or {}))
        with job_run(engine, job.kind, user=actor.email, dry_run=True, parameters=params or {},
                     on_progress=on_progress) as run:
            ctx.run = run
            plan = job.plan(ctx, **(params or {}))
            payload = _write(job, ctx, plan, set(approved))
        return plan, job.after_run(ctx, plan, payload)
    finally:
        ctx.close()


def apply(kind: str, params: dict | None, approved: Iterable[str] = (), actor: Actor | None = None, *,
          run_id: int | None = None, plan: Plan | None = None, engine: Engine | None = None,
          on_progress: ProgressCallback | None = None, cancel_check: Callable[[], bool] | None = None,
          job: Job | None = None) -> tuple[Plan, dict]:
    """Plan (unless `plan` is given) and write the confident proposals plus the approved ones, as one run.

    `run_id`: a run already started for this job (lib.runs.start_run, e.g. by the page that queued it);
    this process takes it over (lib.runs.adopt_run: lock owner, heartbeat) instead of starting one.
    Cancellation: `cancel_check()` when given, else the run's Cancel request (lib.runs.request_cancel).
    """
    if actor is None:
        raise TypeError("apply needs the acting person (lib.roles.Actor)")
    job = job or get_job(kind)
    require_role(actor.role, job.required_role, job.action)
    engine = engine or open_database()
    require_enabled(engine, job.kind)
    params = dict(params or {})
    keys = set(approved)
    ctx = JobContext(engine, actor, dry_run=False, on_progress=on_progress, cancel_check=cancel_check)
    try:
        if plan is None:
            job.check(ctx, **params)
        else:
            job.check_plan(ctx, plan)
        if plan is None and not job.plans_in_run(params):
            plan = job.plan(ctx, **params)
            if plan.stopped and not plan.proposals:  # a service stopped the reading: nothing to write, no run
                ctx.dry_run = True
                return plan, job.payload(ctx, plan, keys, ApplyOutcome()) | {"dry_run": False}
        parameters = job.run_parameters(params, plan, keys)
        with _run(engine, job, actor, parameters, run_id, on_progress) as run:
            ctx.run = run
            written_in_one_pass = False
            if plan is None:
                plan = job.apply_in_one_pass(ctx, **params)
                written_in_one_pass = plan is not None
            if plan is None:
                plan = job.plan(ctx, **params)
            payload = _write(job, ctx, plan, keys, written=written_in_one_pass)
            stats = job.stats(payload, plan)
            if payload.get("cancelled"):
                kept = "undo reverts them" if job.undoable else "they stay written: undo cannot revert them"
                run.cancel(f"{payload['cancelled']}; the completed chunks are kept ({kept})", stats)
            elif plan.stopped:
                run.stop(plan.stopped, stats)
            else:
                run.finish(stats)
        return plan, job.after_run(ctx, plan, payload)
    finally:
        ctx.close()


def _write(job: Job, ctx: JobContext, plan: Plan, approved: set[str], *, written: bool = False) -> dict:
    outcome = ApplyOutcome()
    check_approvals(job, plan, approved, outcome)
    try:
        if not written:
            job.apply(ctx, plan, approved, outcome)
    except JobCancelled as exc:
        outcome.cancelled = True
        reason = str(exc)
    payload = job.payload(ctx, plan, approved, outcome)
    if outcome.cancelled:
        payload["cancelled"] = reason
    return payload


def check_approvals(job: Job, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> None:
    """Report approvals the plan does not hold (any more), and approved proposals that cannot be accepted."""
    by_key = {p.key: p for p in plan.proposals}
    for key in sorted(approved):
        proposal = by_key.get(key)
        if proposal is None:
            outcome.error(f"approved proposal {key} is {NOT_IN_PLAN}", **job.keys_of_key(key))
            continue
        why = job.refuse_approval(proposal)
        if why:
            outcome.error(f"proposal {key} cannot be accepted: {why}", **job.error_keys(proposal))


def write_rows(job: Job, ctx: JobContext, proposals: list[Any], outcome: ApplyOutcome,
               message: str = "writing") -> None:
    """Write `proposals` with `job.write_row`: chunks of `job.chunk_rows`, each one transaction, each row isolated.

    A chunk is first written in one savepoint (two statements per chunk, not per row); when any row fails, that
    savepoint is rolled back and the chunk is written again with a savepoint per row, so exactly the failing
    rows are skipped and reported. A preview (`ctx.dry_run`) runs the same checks on a read-only connection and
    writes nothing. Progress is reported after each committed chunk (outside the transaction: SQLite allows one
    writer), cancellation is checked before each chunk.
    """
    total = len(proposals)
    if ctx.dry_run:
        with job.transaction(ctx) if job.module else ctx.engine.connect() as conn:
            for proposal in proposals:
                _write_one(job, ctx, conn, proposal, outcome, savepoint=False)
        return
    ctx.progress(0, total, message)
    size = max(1, job.chunk_rows)
    for start in range(0, total, size):
        ctx.check_cancel()
        chunk = proposals[start:start + size]
        with job.transaction(ctx) as conn:
            if not _write_chunk_at_once(job, ctx, conn, chunk, outcome):
                for proposal in chunk:
                    _write_one(job, ctx, conn, proposal, outcome, savepoint=True)
        ctx.progress(min(start + size, total), total, message)


class _RowFailed(Exception):
    """A row of an optimistic chunk failed: roll the chunk back, write it row by row."""


def _write_chunk_at_once(job: Job, ctx: JobContext, conn: Connection, chunk: list[Any],
                         outcome: ApplyOutcome) -> bool:
    """Write every row of `chunk` in one savepoint; False (nothing of it kept, `outcome` as before) if a row failed."""
    before = (len(outcome.written), len(outcome.errors), copy.deepcopy(outcome.state))
    try:
        with conn.begin_nested():
            for proposal in chunk:
                try:
                    job.write_row(ctx, conn, proposal, outcome)
                except (RowError, IntegrityError) as exc:
                    raise _RowFailed() from exc
                outcome.written.append(proposal.key)
    except _RowFailed:
        del outcome.written[before[0]:]
        del outcome.errors[before[1]:]
        outcome.state = before[2]
        return False
    return True


def _write_one(job: Job, ctx: JobContext, conn: Connection, proposal: Any, outcome: ApplyOutcome, *,
               savepoint: bool) -> None:
    try:
        if savepoint:
            with conn.begin_nested():
                job.write_row(ctx, conn, proposal, outcome)
        else:
            job.write_row(ctx, conn, proposal, outcome)
    except RowError as exc:
        outcome.error(str(exc), **job.error_keys(proposal))
    except IntegrityError as exc:
        outcome.error(job.integrity_message(proposal, exc), **job.error_keys(proposal))
    else:
        outcome.written.append(proposal.key)


@contextmanager
def _run(engine: Engine, job: Job, actor: Actor, parameters: dict, run_id: int | None,
         on_progress: ProgressCallback | None) -> Iterator[Run]:
    if run_id is None:
        with job_run(engine, job.kind, user=actor.email, dry_run=False, parameters=parameters,
                     on_progress=on_progress) as run:
            yield run
        return
    run = adopt_run(engine, run_id)
    if run.kind != job.kind or run.closed:
        raise ValueError(f"run {run_id} is not a running {job.kind} run")
    run.on_progress = on_progress
    try:
        yield run
    except ServiceError as exc:
        run.stop(str(exc))
        raise
    except BaseException as exc:
        run.fail(str(exc) or type(exc).__name__)
        raise


def exit_code(payload: dict) -> int:
    """The interface's exit code for a finished job: 3 when an outside service stopped it, else 0."""
    return 3 if payload.get("stopped") else 0
