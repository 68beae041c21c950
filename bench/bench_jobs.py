"""Benchmark the job runner: its overhead on a 10,000-row apply, and how soon progress is visible elsewhere.

    python bench/bench_jobs.py [--rows 10000] [--repeat 3] [--databases sqlite,postgresql]

A job on the contract sets the CVR number of N customers (one audited update per row, chunks of 500).
- direct: the job's own writing without the runner — the same chunks, one transaction each, `write_row`
  for every row; no run record, lock, heartbeat, savepoints, progress or payload;
- runner: `lib.jobs.runner.apply` — role check, run record and lock, heartbeat thread, a savepoint per chunk
  (per row only when a row fails), progress rows, cancellation checks, payload, the run closed.
Overhead = runner / direct - 1, from the same run (target < 5 %); the best of --repeat for each.
The runner's own work, less exposed to the host's noise: the same apply of a job whose rows write nothing,
minus the same chunks written directly (medians of at least 5), as a share of the real direct apply.
Progress latency: a second connection polls the run's progress_done every 2 ms; for each chunk, the time
from its commit to the first poll that sees it (target < 1 s). Each measurement uses a fresh database:
a SQLite file in a temporary folder, and a fresh schema on BENCH_DATABASE_URL (default: the local server).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import Connection, Engine  # noqa: E402

from bench.schemas import fresh_schema  # noqa: E402
from lib.audit import insert_rows, update_row  # noqa: E402
from lib.db import get_engine, write_transaction  # noqa: E402
from lib.jobs import runner  # noqa: E402
from lib.jobs.contract import ApplyOutcome, Job, JobContext, Plan  # noqa: E402
from lib.jobs.payload import job_payload  # noqa: E402
from lib.migrations import migrate_core  # noqa: E402
from lib.roles import Actor  # noqa: E402

PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
ACTOR = Actor("bench@bmc.dk", "admin", "cli")


@dataclass(frozen=True)
class SetCvr:
    key: str
    customer_id: int
    cvr: str


class BenchJob(Job):
    kind = "bench-set-cvr"
    title = "Bench: set CVR numbers"
    count_keys = ("proposed", "updated")
    chunk_rows = 500

    def __init__(self, ids: list[int], commits: list[float] | None = None):
        self.ids, self.commits = ids, commits

    def plan(self, ctx: JobContext, **params) -> Plan:
        return Plan(self.kind, params, [SetCvr(f"c{cid}", cid, f"{10000000 + i}") for i, cid in enumerate(self.ids)])

    def transaction(self, ctx: JobContext):
        return _timed(write_transaction(ctx.engine), self.commits)

    def write_row(self, ctx: JobContext, conn: Connection, p: SetCvr, outcome: ApplyOutcome) -> None:
        update_row(conn, "customers", p.customer_id, {"cvr_number": p.cvr}, run_id=ctx.run_id, user=ctx.user)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        return job_payload(run_id=ctx.run_id, dry_run=ctx.dry_run, errors=outcome.errors,
                           proposed=len(plan.proposals), updated=len(outcome.written))


class NoopJob(BenchJob):
    """The same rows and chunks, writing nothing: what remains is the runner's own work."""

    kind = "bench-noop"

    def write_row(self, ctx: JobContext, conn: Connection, p: SetCvr, outcome: ApplyOutcome) -> None:
        return None


class _timed:
    """A transaction context that notes when it committed."""

    def __init__(self, inner, commits: list[float] | None):
        self.inner, self.commits = inner, commits

    def __enter__(self):
        return self.inner.__enter__()

    def __exit__(self, *exc):
        out = self.inner.__exit__(*exc)
        if self.commits is not None:
            self.commits.append(time.perf_counter())
        return out


def direct(engine: Engine, job: BenchJob) -> None:
    """The job's writing alone: the same chunks and rows, no runner."""
    ctx = JobContext(engine, ACTOR, dry_run=False)
    plan = job.plan(ctx)
    outcome = ApplyOutcome()
    for start in range(0, len(plan.proposals), job.chunk_rows):
        with write_transaction(engine) as conn:
            for p in plan.proposals[start:start + job.chunk_rows]:
                job.write_row(ctx, conn, p, outcome)


def fresh_database(kind: str, folder: Path, rows: int) -> tuple[Engine, list[int], callable]:
    if kind == "sqlite":
        url = f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}"
        drop = lambda: None  # noqa: E731 - the folder goes with the run
    else:
        url, drop = fresh_schema(PG_URL, "bench_jobs")
    engine = get_engine(url)
    migrate_core(engine)
    with write_transaction(engine) as conn:
        ids = insert_rows(conn, "customers", [{"name": f"Firma {i} ApS"} for i in range(rows)], run_id=None,
                          user="bench")
    return engine, ids, drop


def clear_cvrs(engine: Engine) -> None:
    with write_transaction(engine) as conn:
        conn.execute(text("UPDATE customers SET cvr_number = NULL"))
        conn.execute(text("DELETE FROM changes"))


def progress_latencies(engine: Engine, ids: list[int]) -> list[float]:
    """One more apply, watched from a second connection: seconds from each chunk's commit to its progress row."""
    clear_cvrs(engine)
    commits: list[float] = []
    seen: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll() -> None:
        with engine.connect() as conn:
            last = -1
            while not stop.is_set():
                done = conn.execute(text("SELECT max(progress_done) FROM runs WHERE kind = :k AND status = 'running'"),
                                    {"k": BenchJob.kind}).scalar()
                conn.rollback()  # a fresh snapshot each poll
                if done is not None and done != last:
                    seen.append((time.perf_counter(), int(done)))
                    last = done
                time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    runner.apply(BenchJob.kind, {}, (), ACTOR, engine=engine, job=BenchJob(ids, commits))
    stop.set()
    poller.join()
    out = []
    for i, committed in enumerate(commits[:-1]):  # the last chunk's progress is written as the run closes
        done = (i + 1) * BenchJob.chunk_rows
        visible = next((t for t, d in seen if d >= done), None)
        if visible is not None:
            out.append(max(0.0, visible - committed))
    return out


def measure(kind: str, rows: int, repeat: int, folder: Path) -> dict:
    engine, ids, drop = fresh_database(kind, folder, rows)
    try:
        direct_s, runner_s = [], []
        for _ in range(repeat):  # alternating, the best of each: the host's load hits both alike
            clear_cvrs(engine)
            started = time.perf_counter()
            direct(engine, BenchJob(ids))
            direct_s.append(time.perf_counter() - started)
            clear_cvrs(engine)
            started = time.perf_counter()
            _plan, payload = runner.apply(BenchJob.kind, {}, (), ACTOR, engine=engine, job=BenchJob(ids))
            runner_s.append(time.perf_counter() - started)
            assert payload["updated"] == rows, payload
        latencies = progress_latencies(engine, ids)
        noop_direct, noop_runner = [], []
        for _ in range(max(5, repeat)):  # the runner's own cost, without the rows' work: short, so repeated more
            started = time.perf_counter()
            direct(engine, NoopJob(ids))
            noop_direct.append(time.perf_counter() - started)
            started = time.perf_counter()
            runner.apply(NoopJob.kind, {}, (), ACTOR, engine=engine, job=NoopJob(ids))
            noop_runner.append(time.perf_counter() - started)
        own = statistics.median(noop_runner) - statistics.median(noop_direct)
        best_direct, best_runner = min(direct_s), min(runner_s)
        return {"db": kind, "direct_s": best_direct, "runner_s": best_runner,
                "overhead": best_runner / best_direct - 1, "own_s": own, "own_share": own / best_direct,
                "latency_median_ms": statistics.median(latencies) * 1000 if latencies else None,
                "latency_max_ms": max(latencies) * 1000 if latencies else None, "chunks": len(latencies)}
    finally:
        engine.dispose()
        drop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.databases.split(","):
            r = measure(kind.strip(), args.rows, args.repeat, Path(folder))
            print(f"{r['db']:10}  {args.rows:,} rows: direct {r['direct_s']:.2f} s, runner {r['runner_s']:.2f} s, "
                  f"overhead {r['overhead'] * 100:+.1f} % (target < 5 %); the runner's own work (a no-op job's apply "
                  f"minus its direct loop, medians) {r['own_s'] * 1000:.0f} ms = {r['own_share'] * 100:.1f} % of direct; progress visible after a chunk commit: "
                  f"median {r['latency_median_ms']:.0f} ms, max {r['latency_max_ms']:.0f} ms over {r['chunks']} "
                  f"chunks (target < 1000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
