"""The e-conomic relink job on the contract: plan with lib.economic_relink, write one link per row.

Each link is checked inside the write transaction, in its own savepoint: a customer whose link changed
since the preview, or a number another customer holds by now, is skipped and reported, never fails the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from lib.audit import insert_rows, update_row
from lib.economic_client import PAGE_SIZE, EconomicClient, EconomicCustomer
from lib.economic_relink import (
    COUNT_KEYS,
    IMPORT_KIND,
    EconomicRelinkPlan,
    RelinkProposal,
    hub_customer_count,
    plan_economic_relink,
    plan_from_stored,
    preview_import,
    stopped_message,
)
from lib.errors import RowError, ServiceError
from lib.job_plans import customers_fingerprint, take_plan, usable_plan
from lib.jobs import runner
from lib.jobs.contract import ApplyOutcome, Job, JobContext, Plan, ProgressCallback
from lib.jobs.payload import job_payload
from lib.roles import Actor

CHANGED = "skipped: the customer's e-conomic link changed (or the customer was deleted) since the preview"


class EconomicRelinkJob(Job):
    kind = "economic-relink"
    title = "e-conomic"
    help = "link Hub customers to e-conomic customer numbers (reads e-conomic only; preview unless --apply)"
    doc = "link Hub customers to e-conomic customer numbers"
    action = "link customers to e-conomic"
    page = "app_pages/economic.py"
    icon = ":material/account_balance:"
    count_keys = COUNT_KEYS
    key_field = "customer_id"
    chunk_rows = 500

    def __init__(self, client: EconomicClient | None = None):
        self.client = client

    def plans_in_run(self, params: dict) -> bool:
        return params.get("plan_id") is not None  # a stored preview: taken (and checked) inside the run

    def check(self, ctx: JobContext, *, plan_id: int | None = None, **_params) -> None:
        if plan_id is None and self.client is None:  # ConfigError (missing tokens) before any request
            self.client = ctx.closing(EconomicClient.from_settings())

    def plan(self, ctx: JobContext, *, plan_id: int | None = None, **_params) -> Plan:
        """Read e-conomic and match; with `plan_id`, the stored preview instead (a page's worker apply),
        refused when it expired, was applied, or the Hub's customers changed since."""
        if plan_id is not None:
            stored = take_plan(ctx.engine, plan_id, self.kind, fingerprint=customers_fingerprint(ctx.engine),
                               run_id=ctx.run_id)
            return as_plan(plan_from_stored(stored))
        self.check(ctx)
        client = self.client
        read: list[EconomicCustomer] = []
        try:
            native = plan_economic_relink(ctx.engine, client, on_progress=ctx.progress, read=read)
        except ServiceError as exc:  # nothing to write: the runner stores no run
            counts = dict.fromkeys(COUNT_KEYS, 0) | {"hub_customers": hub_customer_count(ctx.engine),
                                                     "economic_customers": len(read)}
            return Plan(self.kind, {}, [], counts,
                        stopped=stopped_message(exc, len(read), client.page_size or PAGE_SIZE))
        return as_plan(native)

    def writes(self, plan: Plan, approved: set[str]) -> list[RelinkProposal]:
        return plan.native.writes(approved)

    def keys_of_key(self, key: str) -> dict:
        return {"customer_id": int(key[1:]) if key[:1] == "c" and key[1:].isdigit() else key}

    def integrity_message(self, p: RelinkProposal, exc: Exception) -> str:
        return f"skipped: e-conomic customer {p.economic_number} is already linked to another Hub customer"

    def write_row(self, ctx: JobContext, conn: Connection, p: RelinkProposal, outcome: ApplyOutcome) -> None:
        lock = " FOR UPDATE" if conn.dialect.name == "postgresql" and not ctx.dry_run else ""
        row = conn.execute(text(f"SELECT economic_customer_number FROM customers WHERE id = :id{lock}"),
                           {"id": p.customer_id}).first()
        if row is None or row[0] != p.current_number:
            raise RowError(CHANGED, key=p.customer_id)
        released: set[int] = outcome.state.setdefault("released", set())  # numbers earlier rows gave up
        claimed: dict[int, int] = outcome.state.setdefault("claimed", {})  # numbers earlier rows took
        holder = claimed.get(p.economic_number)
        if holder is None and p.economic_number not in released:
            holder = conn.execute(
                text("SELECT id FROM customers WHERE economic_customer_number = :n AND id <> :id"),
                {"n": p.economic_number, "id": p.customer_id}).scalar()
        if holder is not None and holder != p.customer_id:
            raise RowError(f"skipped: e-conomic customer {p.economic_number} is already linked to Hub customer "
                           f"{holder}", key=p.customer_id)
        if not ctx.dry_run:
            update_row(conn, "customers", p.customer_id, {"economic_customer_number": p.economic_number},
                       run_id=ctx.run_id, user=ctx.user, current={"economic_customer_number": row[0]})
        if p.current_number is not None:
            released.add(p.current_number)
            claimed.pop(p.current_number, None)
        claimed[p.economic_number] = p.customer_id
        released.discard(p.economic_number)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        native = plan.native
        if not isinstance(native, EconomicRelinkPlan):  # the read stopped: its counts, nothing else
            return job_payload(run_id=None, dry_run=ctx.dry_run, errors=[], stopped=plan.stopped, **native)
        counts = native.counts(approved)
        written = set(outcome.written)
        for p in native.writes(approved):
            if p.key not in written:  # skipped while writing: left for a person, like an ambiguous one
                counts["linked"] -= 1
                counts["changed"] -= p.current_number is not None
                counts["ambiguous"] += 1
        return job_payload(run_id=ctx.run_id, dry_run=ctx.dry_run, errors=native.errors() + outcome.errors,
                           **counts)

    def run_parameters(self, params: dict, plan: Plan | None, approved: set[str]) -> dict:
        if plan is None:  # a stored preview, read inside the run
            return {**params, "approved": sorted(approved)}
        native = plan.native
        return {"approved": sorted(approved), "planned_links": len(native.writes(approved)),
                "plan_created_at": native.created_at, "economic_customers": native.economic_customers}


def as_plan(native: EconomicRelinkPlan) -> Plan:
    return Plan(EconomicRelinkJob.kind, {}, list(native.proposals), native)


def run_economic_relink(engine: Engine, *, apply: bool, actor: Actor, client: EconomicClient | None = None,
                        on_progress: ProgressCallback | None = None) -> dict:
    """Plan, then (with `apply`) write the automatic proposals. Missing tokens: ConfigError before any
    request; a service failure while reading: a payload with `stopped` (nothing written, no run stored)."""
    job = EconomicRelinkJob(client)
    if apply:
        return runner.apply(job.kind, {}, (), actor, engine=engine, on_progress=on_progress, job=job)[1]
    return runner.preview(job.kind, {}, actor, engine=engine, on_progress=on_progress, job=job)[1]


def apply_economic_relink(engine: Engine, plan: EconomicRelinkPlan, *, actor: Actor,
                          approved: Iterable[str] = (), on_progress: ProgressCallback | None = None) -> dict:
    """Write a preview's automatic proposals plus the approved ones in one run (audited); the payload."""
    return runner.apply(EconomicRelinkJob.kind, {}, approved, actor, plan=as_plan(plan), engine=engine,
                        on_progress=on_progress, job=EconomicRelinkJob())[1]


# --- creating Hub customers for e-conomic customers that have none (the page's third tab) ---------------------

@dataclass(frozen=True)
class NewCustomer:
    """One Hub customer to create from an e-conomic customer no Hub customer holds or resembles."""

    key: str  # "e<e-conomic number>"
    row: int  # the e-conomic customer number: what an error row names
    values: dict


class EconomicImportCustomersJob(Job):
    """A side job of the relink (no command of its own): one run, one audited insert per customer, each in its
    savepoint, so a number or CVR a Hub customer holds by now skips that row only.

    Built by kind alone (a page's worker): `plan_id` names the relink preview whose e-conomic customers without
    a Hub customer are created (`numbers`: only those); nothing is read from e-conomic."""

    kind = IMPORT_KIND
    title = "Create Hub customers from e-conomic"
    action = "create customers from e-conomic"
    count_keys = ("created", "skipped")
    key_field = "row"
    plan_in_run = True  # the stored preview is taken inside the run the page recorded

    def plan(self, ctx: JobContext, *, plan_id: int, numbers: Iterable[int] | None = None, **_params) -> Plan:
        """The stored relink preview's customers without a Hub customer; refused when it is expired or applied
        (each row is still checked against the Hub's customers as they are when it is written)."""
        stored = usable_plan(ctx.engine, plan_id, EconomicRelinkJob.kind, fingerprint=None)  # checked, not claimed
        return import_plan(plan_from_stored(stored["plan"]), numbers)

    def write_row(self, ctx: JobContext, conn: Connection, p: NewCustomer, outcome: ApplyOutcome) -> None:
        if conn.execute(text("SELECT 1 FROM customers WHERE economic_customer_number = :n"), {"n": p.row}).first():
            raise RowError("skipped: a Hub customer already holds this e-conomic number", key=p.row)
        cvr = p.values["cvr_number"]
        taken: set[str] = outcome.state.setdefault("cvrs", set())  # a preview inserts nothing, so it remembers
        if cvr and (cvr in taken or conn.execute(text("SELECT 1 FROM customers WHERE cvr_number = :c"),
                                                 {"c": cvr}).first()):
            raise RowError(f"skipped: a Hub customer already has CVR {cvr}", key=p.row)
        if not ctx.dry_run:
            insert_rows(conn, "customers", [p.values], run_id=ctx.run_id, user=ctx.user)
        if cvr:
            taken.add(cvr)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        created = len(outcome.written)
        return job_payload(run_id=ctx.run_id, dry_run=ctx.dry_run, errors=outcome.errors, created=created,
                           skipped=len(plan.proposals) - created)

    def run_parameters(self, params: dict, plan: Plan | None, approved: set[str]) -> dict:
        return {**params} if plan is None else {"economic_numbers": [p.row for p in plan.proposals]}


def import_unlinked_customers(engine: Engine, plan: EconomicRelinkPlan, *, actor: Actor,
                              numbers: Iterable[int] | None = None,
                              on_progress: ProgressCallback | None = None) -> dict:
    """Create Hub customers for the plan's e-conomic customers that have none (or only `numbers`), as one run of
    kind `economic-import-customers` through the job runner (role, lock, progress, closed on every path)."""
    job = EconomicImportCustomersJob()
    return runner.apply(job.kind, {}, (), actor, plan=import_plan(plan, numbers), engine=engine,
                        on_progress=on_progress, job=job)[1]


def import_plan(plan: EconomicRelinkPlan, numbers: Iterable[int] | None = None) -> Plan:
    """The Hub customers to create for the relink plan's e-conomic customers that have none (or only `numbers`)."""
    rows = preview_import(plan)
    if numbers is not None:
        wanted = {int(n) for n in numbers}
        rows = [r for r in rows if r["economic_customer_number"] in wanted]
    proposals = [NewCustomer(f"e{r['economic_customer_number']}", r["economic_customer_number"],
                             {**r, "name": r["name"] or f"e-conomic customer {r['economic_customer_number']}"})
                 for r in rows]
    return Plan(IMPORT_KIND, {}, proposals, plan)
