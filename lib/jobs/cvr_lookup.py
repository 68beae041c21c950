"""The CVR lookup job on the contract: plan with lib.cvr_lookup, write one CVR per row (savepoint each)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Connection, Engine

from lib.audit import read_row, update_row
from lib.cvr_client import CvrClient
from lib.cvr_lookup import (
    AMBIGUOUS,
    COUNT_KEYS,
    FOUND,
    NOT_FOUND,
    CvrLookupPlan,
    CvrProposal,
    make_client,
    plan_cvr_lookup,
    plan_from_stored,
    public_proposal,
    why_not_writable,
)
from lib.errors import InputError, RowError
from lib.job_plans import customers_fingerprint, take_plan
from lib.jobs import runner
from lib.jobs.contract import ApplyOutcome, Job, JobContext, Plan, ProgressCallback
from lib.jobs.payload import job_payload
from lib.roles import Actor


def _customer_of_key(key: str) -> int | str:
    head = str(key).partition(":")[0]
    return int(head) if head.isdigit() else str(key)


class CvrLookupJob(Job):
    kind = "cvr-lookup"
    title = "CVR lookup"
    help = "find CVR numbers for customers without one (cvrapi.dk, cached; preview unless --apply)"
    usage = "[--limit N]"
    doc = "find CVR numbers for customers without one"
    action = "set CVR numbers"
    page = "app_pages/cvr_lookup.py"
    icon = ":material/travel_explore:"
    count_keys = COUNT_KEYS
    key_field = "customer_id"
    plan_in_run = True  # the requests are the long part, and what was decided before a stop is kept

    def __init__(self, client: CvrClient | None = None):
        self.client = client  # tests and the sandbox pass one; else the configured client

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--limit", type=int, metavar="N",
                            help="consider at most N customers (never-asked ones first)")

    def params_from_args(self, args: argparse.Namespace) -> dict:
        if args.limit is not None and args.limit < 1:
            raise InputError(f"--limit must be at least 1, got {args.limit}")
        return {"limit": args.limit}

    def check(self, ctx: JobContext, *, limit: int | None = None, plan_id: int | None = None, **_ignored) -> None:
        if limit is not None and limit < 1:
            raise InputError(f"--limit must be at least 1, got {limit}")
        if self.client is None and plan_id is None:  # ConfigError (no CVR_USER_AGENT) before any run or request
            self.client = ctx.closing(make_client(ctx.engine))

    def plan(self, ctx: JobContext, *, limit: int | None = None, customer_ids: Iterable[int] | None = None,
             plan_id: int | None = None, **_ignored) -> Plan:
        """Ask cvrapi.dk (cache first); with `plan_id`, the stored preview instead (a page's worker apply),
        refused when it expired, was applied, or the customers changed since."""
        if plan_id is not None:
            stored = take_plan(ctx.engine, plan_id, self.kind, fingerprint=customers_fingerprint(ctx.engine),
                               run_id=ctx.run_id)
            native = plan_from_stored(stored)
            native.requests_made = 0  # this run asks nothing
            return as_plan(native)
        self.check(ctx, limit=limit)
        client = self.client
        ids = None if customer_ids is None else sorted({int(i) for i in customer_ids})
        native = plan_cvr_lookup(ctx.engine, client, limit=limit, customer_ids=ids, on_progress=ctx.progress)
        return as_plan(native)

    def writes(self, plan: Plan, approved: set[str]) -> list[CvrProposal]:
        return [p for p in plan.proposals if p.outcome == FOUND or (p.approvable and p.key in approved)]

    def refuse_approval(self, proposal: CvrProposal) -> str | None:
        return None if proposal.outcome == FOUND or proposal.approvable else proposal.reason

    def keys_of_key(self, key: str) -> dict:
        return {"customer_id": _customer_of_key(key)}

    def integrity_message(self, proposal: CvrProposal, exc: Exception) -> str:
        return f"not written: CVR {proposal.cvr} was taken by another customer meanwhile"

    def write_row(self, ctx: JobContext, conn: Connection, p: CvrProposal, outcome: ApplyOutcome) -> None:
        claimed = outcome.state.setdefault("claimed", set())
        problem = why_not_writable(conn, p, lock=not ctx.dry_run) or (
            f"CVR {p.cvr} is written to another customer in this run" if p.cvr in claimed else None)
        if problem:
            raise RowError(f"not written: {problem}", key=p.customer_id)
        if not ctx.dry_run:
            update_row(conn, "customers", p.customer_id, {"cvr_number": p.cvr}, run_id=ctx.run_id, user=ctx.user)
        claimed.add(p.cvr)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        native: CvrLookupPlan = plan.native
        return job_payload(
            run_id=ctx.run_id, dry_run=ctx.dry_run, errors=outcome.errors, stopped=native.stopped,
            candidates=native.candidates, found=native.count(FOUND), updated=len(outcome.written),
            not_found=native.count(NOT_FOUND), ambiguous=native.count(AMBIGUOUS), not_asked=len(native.not_asked),
            quota_exhausted=native.quota_exhausted, requests=native.requests_made,
            proposals=[public_proposal(p) for p in native.proposals],
        )

    def stats(self, payload: dict, plan: Plan) -> dict:
        return {k: payload[k] for k in COUNT_KEYS} | {"requests": payload["requests"]}

    def run_parameters(self, params: dict, plan: Plan | None, approved: set[str]) -> dict:
        base = plan.native.parameters if plan is not None else {"limit": params.get("limit"),
                                                                 "customer_ids": params.get("customer_ids")}
        return base | {"approved": sorted(approved)} | ({"source": "preview"} if plan is not None else {})

    def summary(self, payload: dict) -> str:
        lines = [super().summary(payload)]
        for p in payload["proposals"]:
            if p["outcome"] == "ambiguous":
                lines.append(f"  needs a person: customer {p['customer_id']} {p['customer_name']!r} → "
                             f"{p['company_name']} (CVR {p['cvr']}): {p['reason']}")
        return "\n".join(lines)


def as_plan(native: CvrLookupPlan) -> Plan:
    return Plan(CvrLookupJob.kind, dict(native.parameters), list(native.proposals), native, stopped=native.stopped)


# --- the entry points the pages, the CLI and the tests call ---------------------------------------------------

def run_cvr_lookup(engine: Engine, *, apply: bool, actor: Actor, limit: int | None = None,
                   customer_ids: Iterable[int] | None = None, client: CvrClient | None = None,
                   approved: Iterable[str] = (), on_progress: ProgressCallback | None = None) -> dict:
    """Plan, then (with `apply`) write the confident proposals in the same run."""
    params: dict[str, Any] = {"limit": limit,
                              "customer_ids": None if customer_ids is None else sorted({int(i) for i in customer_ids})}
    job = CvrLookupJob(client)
    if apply:
        return runner.apply(job.kind, params, approved, actor, engine=engine, on_progress=on_progress, job=job)[1]
    return runner.preview(job.kind, params, actor, approved=approved, engine=engine, on_progress=on_progress,
                          job=job)[1]


def apply_cvr_lookup(engine: Engine, plan: CvrLookupPlan, *, actor: Actor, approved: Iterable[str] = (),
                     on_progress: ProgressCallback | None = None) -> dict:
    """Write a preview's confident proposals plus the approved ambiguous ones, as one run; no outside call."""
    return runner.apply(CvrLookupJob.kind, plan.parameters, approved, actor, plan=as_plan(plan), engine=engine,
                        on_progress=on_progress, job=CvrLookupJob())[1]


def lookup_one(engine: Engine, customer_id: int, *, actor: Actor, apply: bool, approved_key: str | None = None,
               client: CvrClient | None = None) -> dict:
    """Look up one customer (the customer page's button). With `apply`, writes a confident answer, or the
    ambiguous one whose proposal key a person approved. The payload carries `proposal` (or None)."""
    with engine.connect() as conn:
        customer = read_row(conn, "customers", int(customer_id))
    if customer is None:
        raise InputError(f"there is no customer with id {customer_id}")
    if customer["cvr_number"]:
        raise InputError(f"customer {customer_id} already has CVR {customer['cvr_number']}; it is never overwritten")
    payload = run_cvr_lookup(engine, apply=apply, actor=actor, customer_ids=[int(customer_id)], client=client,
                             approved=[approved_key] if approved_key else ())
    payload["proposal"] = payload["proposals"][0] if payload["proposals"] else None
    return payload
