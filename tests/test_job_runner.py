"""The job runner's guarantees, with a small job on the contract against the real database (both kinds)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from lib.audit import insert_row, update_row
from lib.db import write_transaction
from lib.errors import NotAllowed, RowError
from lib.jobs import runner
from lib.jobs.contract import ApplyOutcome, Job, JobContext, Plan
from lib.jobs.payload import job_payload
from lib.roles import Actor
from lib.runs import get_run, list_runs, run_changes, undo_run

ADMIN = Actor("anna@bmc.dk", "admin")
VIEWER = Actor("vera@bmc.dk", "viewer")


@dataclass(frozen=True)
class SetCvr:
    key: str
    customer_id: int
    cvr: str


class SetCvrJob(Job):
    """Writes the given CVR numbers, one proposal per customer; `refuse` names customers whose row fails."""

    kind = "test-set-cvr"
    title = "Set CVR (test)"
    count_keys = ("proposed", "updated")
    chunk_rows = 2

    def __init__(self, wanted: dict[int, str], refuse: set[int] = frozenset(), explode: int | None = None):
        self.wanted, self.refuse, self.explode = wanted, refuse, explode

    def plan(self, ctx: JobContext, **params) -> Plan:
        proposals = [SetCvr(f"c{cid}", cid, cvr) for cid, cvr in self.wanted.items()]
        return Plan(self.kind, params, proposals)

    def write_row(self, ctx: JobContext, conn: Connection, p: SetCvr, outcome: ApplyOutcome) -> None:
        if p.customer_id == self.explode:
            raise RuntimeError("the disk is full")
        if not ctx.dry_run:  # written first, refused after: the savepoint must take the write back
            update_row(conn, "customers", p.customer_id, {"cvr_number": p.cvr}, run_id=ctx.run_id, user=ctx.user)
        if p.customer_id in self.refuse:
            raise RowError(f"customer {p.customer_id} is refused", key=p.customer_id)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        return job_payload(run_id=ctx.run_id, dry_run=ctx.dry_run, errors=outcome.errors,
                           proposed=len(plan.proposals), updated=len(outcome.written))


def customers(engine, n: int) -> list[int]:
    with write_transaction(engine) as conn:
        return [insert_row(conn, "customers", {"name": f"Firma {i}"}, run_id=None, user="t") for i in range(n)]


def cvrs(engine) -> dict[int, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, cvr_number FROM customers")).all())


def test_a_failing_row_is_skipped_and_reported_the_rest_is_written(engine):
    """A duplicate CVR (IntegrityError) and a RowError each lose only their own row; the run succeeds; undo works."""
    ids = customers(engine, 5)
    wanted = {ids[0]: "11111111", ids[1]: "11111111", ids[2]: "22222222", ids[3]: "33333333", ids[4]: "44444444"}
    job = SetCvrJob(wanted, refuse={ids[3]})
    _plan, payload = runner.apply(job.kind, {}, (), ADMIN, engine=engine, job=job)
    assert cvrs(engine) == {ids[0]: "11111111", ids[1]: None, ids[2]: "22222222", ids[3]: None, ids[4]: "44444444"}
    assert payload["updated"] == 3 and payload["dry_run"] is False
    assert [e["customer_id"] for e in payload["errors"]] == [ids[1], ids[3]]
    assert "refused the change" in payload["errors"][0]["message"]
    assert payload["errors"][1]["message"] == f"customer {ids[3]} is refused"
    run = get_run(engine, payload["run_id"])
    assert run["status"] == "succeeded" and run["stats"] == {"proposed": 5, "updated": 3}
    assert {c["row_id"] for c in run_changes(engine, payload["run_id"])} == {ids[0], ids[2], ids[4]}
    undo_run(engine, payload["run_id"], user=ADMIN.email)
    assert set(cvrs(engine).values()) == {None}


def test_earlier_chunks_stay_committed_when_a_later_chunk_fails(engine):
    """Chunks of 2: an unexpected error in the third row fails the run; the first chunk stays, undo reverts it."""
    ids = customers(engine, 4)
    job = SetCvrJob({cid: f"{i + 1}" * 8 for i, cid in enumerate(ids)}, explode=ids[2])
    with pytest.raises(RuntimeError, match="disk is full"):
        runner.apply(job.kind, {}, (), ADMIN, engine=engine, job=job)
    assert cvrs(engine) == {ids[0]: "11111111", ids[1]: "22222222", ids[2]: None, ids[3]: None}
    run = list_runs(engine, kind=job.kind)[0]
    assert run["status"] == "failed" and "disk is full" in run["error"]
    undo_run(engine, run["run_id"], user=ADMIN.email)
    assert set(cvrs(engine).values()) == {None}


def test_approvals_not_in_the_plan_are_error_rows(engine):
    ids = customers(engine, 1)
    job = SetCvrJob({ids[0]: "12345678"})
    _plan, payload = runner.apply(job.kind, {}, ["c999", f"c{ids[0]}"], ADMIN, engine=engine, job=job)
    assert payload["errors"] == [{"customer_id": "c999",
                                  "message": "approved proposal c999 is not in the plan (any more); nothing written"}]
    assert payload["updated"] == 1 and get_run(engine, payload["run_id"])["status"] == "succeeded"


def test_preview_checks_every_row_and_writes_nothing(engine):
    ids = customers(engine, 3)
    job = SetCvrJob({cid: f"{i + 1}" * 8 for i, cid in enumerate(ids)}, refuse={ids[1]})
    _plan, payload = runner.preview(job.kind, {}, VIEWER, engine=engine, job=job)
    assert payload["run_id"] is None and payload["dry_run"] is True and payload["updated"] == 2
    assert [e["customer_id"] for e in payload["errors"]] == [ids[1]]
    assert set(cvrs(engine).values()) == {None} and list_runs(engine) == []


def test_role_is_checked_before_any_run(engine):
    ids = customers(engine, 1)
    job = SetCvrJob({ids[0]: "12345678"})
    with pytest.raises(NotAllowed):
        runner.apply(job.kind, {}, (), VIEWER, engine=engine, job=job)
    assert list_runs(engine) == [] and cvrs(engine)[ids[0]] is None


def test_cancel_stops_at_the_next_chunk_and_keeps_the_written_ones(engine):
    ids = customers(engine, 5)
    job = SetCvrJob({cid: f"{i + 1}" * 8 for i, cid in enumerate(ids)})
    asked = iter([None, "bo@bmc.dk"])  # asked before each chunk: the second chunk is not started
    _plan, payload = runner.apply(job.kind, {}, (), ADMIN, engine=engine, job=job, cancel_check=lambda: next(asked))
    assert payload["cancelled"] == "cancelled by bo@bmc.dk" and payload["updated"] == 2
    assert sorted(v for v in cvrs(engine).values() if v) == ["11111111", "22222222"]
    run = get_run(engine, payload["run_id"])
    assert run["status"] == "cancelled" and run["stats"]["updated"] == 2
    undo_run(engine, payload["run_id"], user=ADMIN.email)
    assert set(cvrs(engine).values()) == {None}


def test_progress_is_stored_on_the_run_after_each_chunk(engine):
    ids = customers(engine, 4)
    seen: list[tuple[int, int]] = []
    job = SetCvrJob({cid: f"{i + 1}" * 8 for i, cid in enumerate(ids)})
    _plan, payload = runner.apply(job.kind, {}, (), ADMIN, engine=engine, job=job,
                                  on_progress=lambda d, t, m: seen.append((d, t)))
    assert seen == [(0, 4), (2, 4), (4, 4)]
    run = get_run(engine, payload["run_id"])
    assert (run["progress_done"], run["progress_total"]) == (4, 4)


def test_every_core_job_is_built_from_its_kind_alone():
    from lib.jobs.registry import core_jobs, get_job

    kinds = [job.kind for job in core_jobs()]
    assert kinds == ["import-subscriptions", "cvr-lookup", "economic-relink", "crm-sync"]
    for kind in kinds:
        job = get_job(kind)
        assert job.kind == kind and job.title and job.help and job.required_role == "operator"
