"""The CRM sync job on the contract: plan with lib.crm_sync, write one customer per row (savepoint each).

The optional write-back to the CRM is its own run (`crm-write-back`), done after the sync's run closed.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from lib.audit import update_row
from lib.crm_sync import (
    CHUNK,
    COUNT_KEYS,
    SOURCES,
    WRITE_BACK_KIND,
    CrmProposal,
    CrmSyncPlan,
    WriteBackPlan,
    WriteBackProposal,
    _counts,
    _is_chosen,
    _require_write_back,
    id_column,
    open_client,
    plan_crm_sync,
    plan_crm_write_back,
    write_back_preview,
)
from lib.errors import RowError, ServiceError
from lib.http_session import wait_message
from lib.job_plans import PlanUnusable, take_plan
from lib.jobs import runner
from lib.jobs.contract import ApplyOutcome, Job, JobCancelled, JobContext, Plan, ProgressCallback
from lib.jobs.payload import job_payload
from lib.roles import Actor
from lib.vtiger_client import VtigerClient

CANCEL_CHECK_SECONDS = 1.0  # a read's Cancel check: one query at most this often


def _chosen_keys(native: CrmSyncPlan, approved: Iterable[str]) -> set[str]:
    keys = native.by_key()
    return {k for k in approved if k in keys and keys[k].needs_approval and keys[k].approvable}


class CrmSyncJob(Job):
    kind = "crm-sync"
    title = "CRM sync"
    help = "fill missing CVR numbers from the CRM and link accounts (preview unless --apply)"
    usage = "--source vtiger|simplycrm [--write-back]"
    doc = ("fill missing CVR numbers from the CRM and link accounts; `--write-back` fills the CRM's empty CVR fields "
           "(needs `CRM_WRITE_BACK=true`)")
    action = "apply the CRM sync"
    page = "app_pages/crm_sync.py"
    icon = ":material/sync:"
    count_keys = ("source", *COUNT_KEYS)
    key_field = "account_id"
    chunk_rows = CHUNK

    def __init__(self, client: VtigerClient | None = None):
        self.client = client

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--source", required=True, choices=SOURCES, help="which CRM to read")
        parser.add_argument("--write-back", action="store_true",
                            help="also fill the CRM's empty CVR fields from the Hub (needs CRM_WRITE_BACK=true; "
                                 "previewed unless --apply)")

    def params_from_args(self, args: argparse.Namespace) -> dict:
        return {"source": args.source, "write_back": bool(args.write_back)}

    def check(self, ctx: JobContext, *, source: str = "", write_back: bool = False, **_ignored) -> None:
        id_column(source)
        if write_back:
            _require_write_back(ctx.actor, not ctx.dry_run)
        if self.client is None:  # ConfigError (URL, user or key missing) before any request
            self.client = ctx.closing(open_client(source))

    def plan(self, ctx: JobContext, *, source: str = "", write_back: bool = False, **_ignored) -> Plan:
        self.check(ctx, source=source, write_back=write_back)
        native = plan_crm_sync(ctx.engine, self.client, on_progress=ctx.progress)
        return as_plan(native, write_back=write_back)

    def writes(self, plan: Plan, approved: set[str]) -> list[CrmProposal]:
        chosen_keys = _chosen_keys(plan.native, approved)
        chosen = [p for p in plan.proposals if _is_chosen(p, chosen_keys) and (p.new_cvr or p.store_link)]
        return sorted(chosen, key=lambda p: p.needs_approval)  # confident ones first: an approval never takes theirs

    def error_keys(self, p: CrmProposal) -> dict:
        return {"account_id": p.account_id, "customer_id": p.customer_id}

    def keys_of_key(self, key: str) -> dict:
        return {"account_id": key.partition(":")[2] or key, "customer_id": None}

    def integrity_message(self, p: CrmProposal, exc: Exception) -> str:
        return f"{p.account_name}: the database refused the change (duplicate value); nothing written"

    def write_row(self, ctx: JobContext, conn: Connection, p: CrmProposal, outcome: ApplyOutcome) -> None:
        col = id_column(p.source)
        row = conn.execute(text(f"SELECT id, cvr_number, {col} FROM customers WHERE id = :id"),
                           {"id": p.customer_id}).mappings().first()

        def refused(message: str) -> RowError:
            return RowError(f"{p.account_name}: {message}", key=p.account_id)

        if row is None:
            raise refused(f"customer {p.customer_id} no longer exists; nothing written")
        current = dict(row)
        if current["cvr_number"] != p.hub_cvr or current[col] != p.hub_account_id:
            raise refused(f"customer {p.customer_id} changed since the preview; nothing written (preview again)")
        values: dict = {}
        if p.store_link and current[col] != p.account_id:
            holder = conn.execute(text(f"SELECT id FROM customers WHERE {col} = :a AND id <> :id"),
                                  {"a": p.account_id, "id": p.customer_id}).scalar()
            if holder is not None:
                raise refused(f"account {p.account_id} is linked to customer {holder} meanwhile; nothing written")
            values[col] = p.account_id
        if p.new_cvr and current["cvr_number"] != p.new_cvr:
            holder = conn.execute(text("SELECT id FROM customers WHERE cvr_number = :c AND id <> :id"),
                                  {"c": p.new_cvr, "id": p.customer_id}).scalar()
            if holder is not None:  # the link is still written; only the CVR is refused
                outcome.error(f"{p.account_name}: CVR {p.new_cvr} belongs to customer {holder}; the CVR was not "
                              "written", **self.error_keys(p))
            else:  # chosen proposals needing approval are here only when a person approved them
                values["cvr_number"] = p.new_cvr
        if values and not ctx.dry_run:
            update_row(conn, "customers", int(p.customer_id), values, run_id=ctx.run_id, user=ctx.user,
                       current=current)
        if "cvr_number" in values:
            outcome.state.setdefault("cvr", set()).add(p.key)
        if col in values:
            outcome.state.setdefault("link", set()).add(p.key)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        native: CrmSyncPlan = plan.native
        counts = _counts(native, outcome.state.get("cvr", set()), outcome.state.get("link", set()),
                             _chosen_keys(native, approved))
        return job_payload(run_id=ctx.run_id, dry_run=ctx.dry_run, errors=list(native.errors) + outcome.errors,
                           stopped=native.stopped, source=native.source, **counts)

    def stats(self, payload: dict, plan: Plan) -> dict:
        return {k: payload[k] for k in self.count_keys} | {"errors": len(payload["errors"]),
                                                           "missing": plan.native.missing}

    def run_parameters(self, params: dict, plan: Plan | None, approved: set[str]) -> dict:
        native: CrmSyncPlan = plan.native
        return {"source": native.source, "approved": sorted(_chosen_keys(native, approved)),
                "accounts": len(native.accounts)}

    def after_run(self, ctx: JobContext, plan: Plan, payload: dict) -> dict:
        """The write-back to the CRM (its own run), when asked for and the sync read everything."""
        if not plan.params.get("write_back") or plan.stopped:
            return payload
        apply = not ctx.dry_run
        wb_plan = plan_crm_write_back(ctx.engine, self.client, sync_plan=plan.native, planned_links=not apply)
        wb = (apply_crm_write_back(ctx.engine, self.client, wb_plan, actor=ctx.actor) if apply
              else write_back_preview(wb_plan))
        payload["write_back"] = wb
        if wb.get("stopped") and not payload.get("stopped"):
            payload["stopped"] = f"write-back: {wb['stopped']}"
        return payload

    def summary(self, payload: dict) -> str:
        text_ = super().summary(payload)
        wb = payload.get("write_back")
        if wb:
            text_ += (f"\nwrite-back to the CRM field {wb['cvr_field']}: proposed {wb['proposed']}, written "
                      f"{wb['written']}, skipped {wb['skipped']}" + (f" (run {wb['run_id']})" if wb.get("run_id")
                                                                     else " (preview)"))
            text_ += "".join(f"\n  {e.get('account_id')}: {e['message']}" for e in wb["errors"][:50])
        return text_


def as_plan(native: CrmSyncPlan, write_back: bool = False) -> Plan:
    return Plan(CrmSyncJob.kind, {"source": native.source, "write_back": write_back}, list(native.proposals), native,
                stopped=native.stopped)


def run_crm_sync(engine: Engine, *, source: str, apply: bool, actor: Actor, client: VtigerClient | None = None,
                 write_back: bool = False, on_progress: ProgressCallback | None = None) -> dict:
    """Plan, then (with `apply`) write the confident proposals; optionally the CRM write-back."""
    job = CrmSyncJob(client)
    params = {"source": source, "write_back": write_back}
    if apply:
        return runner.apply(job.kind, params, (), actor, engine=engine, on_progress=on_progress, job=job)[1]
    return runner.preview(job.kind, params, actor, engine=engine, on_progress=on_progress, job=job)[1]


def apply_crm_sync(engine: Engine, plan: CrmSyncPlan, *, actor: Actor, approved: Iterable[str] = (),
                   on_progress: ProgressCallback | None = None) -> dict:
    """Write a preview's confident proposals and the approved ones (ambiguous: link the best candidate;
    conflict: take the CRM's CVR) as one `crm-sync` run; each row re-checked in its own savepoint."""
    return runner.apply(CrmSyncJob.kind, {"source": plan.source}, approved, actor, plan=as_plan(plan),
                        engine=engine, on_progress=on_progress, job=CrmSyncJob())[1]


# --- the write-back: filling the CRM's empty CVR fields from the Hub --------------------------------------------

class CrmWriteBackJob(Job):
    """A side job of the CRM sync (its `--write-back`; no command of its own): one run that writes to the CRM,
    account by account, with progress and Cancel between accounts. Each account is retrieved first and left as it
    is when its CVR field is no longer empty; an account the CRM no longer has is reported and skipped; a service
    failure stops the run (what was written stays written; the Hub cannot undo CRM writes)."""

    kind = WRITE_BACK_KIND
    title = "CRM write-back"
    action = "write CVR numbers to the CRM"
    count_keys = ("source", "cvr_field", "proposed", "written", "skipped")
    key_field = "account_id"
    plan_in_run = True  # built by kind alone (a page's worker): it reads the CRM again inside its run
    undoable = False  # it writes to the CRM

    def __init__(self, client: VtigerClient | None = None):
        self.client = client
        self.accounts_written: list[str] = []
        self.previewed: dict[str, str] | None = None  # key → CVR of the stored preview named by `plan_id`

    def check(self, ctx: JobContext, *, source: str = "", **_ignored) -> None:
        id_column(source)
        _require_write_back(ctx.actor, True)
        if self.client is None:  # ConfigError (URL, user or key missing) before any request
            self.client = ctx.closing(open_client(source))

    def plan(self, ctx: JobContext, *, source: str = "", plan_id: int | None = None, **_ignored) -> Plan:
        """Read the CRM again (stored links only) inside the run; the apply writes the approved keys only, so
        what is written is what the person previewed and still holds (an account filled meanwhile, or no longer
        linked, is reported as not in the plan any more). With `plan_id` (the page's stored preview, claimed
        once: refused when expired or applied) an account is written only with the CVR that preview showed.
        Cancel is honoured between pages of the read."""
        self.check(ctx, source=source)
        if plan_id is not None:
            stored = take_plan(ctx.engine, plan_id, self.kind, fingerprint=None, run_id=ctx.run_id)
            if stored["source"] != source:
                raise PlanUnusable(f"stored preview {plan_id} is of {stored['source']}, not {source}")
            self.previewed = {p["key"]: p["cvr"] for p in stored["proposals"]}
        asked = [0.0]

        def reading(done: int, total: int, message: str = "") -> None:
            ctx.progress(done, total, message)
            if time.monotonic() - asked[0] >= CANCEL_CHECK_SECONDS:
                asked[0] = time.monotonic()
                ctx.check_cancel()

        params = {"source": source, "approved_only": True}
        try:
            native = plan_crm_write_back(ctx.engine, self.client, planned_links=False, on_progress=reading)
        except JobCancelled:  # nothing written yet: the apply's first Cancel check ends the run as cancelled
            return Plan(self.kind, params, [], WriteBackPlan(source, "", [], []))
        return Plan(self.kind, params, list(native.proposals), native)

    def refuse_approval(self, p: WriteBackProposal) -> str | None:
        if self.previewed is None:
            return None
        if p.key not in self.previewed:
            return "it is not in the stored preview"
        if self.previewed[p.key] != p.cvr:
            return (f"customer {p.customer_id}'s CVR is now {p.cvr}, the preview showed {self.previewed[p.key]}; "
                    "nothing written (preview again)")
        return None

    def writes(self, plan: Plan, approved: set[str]) -> list[WriteBackProposal]:
        """The accounts to write: the approved ones of a plan read in the run (with the previewed CVR, when a
        stored preview is named), else every proposal handed over."""
        if plan.params.get("approved_only"):
            return [p for p in plan.proposals if p.key in approved and self.refuse_approval(p) is None]
        return list(plan.proposals)

    def error_keys(self, p: WriteBackProposal) -> dict:
        return {"account_id": p.account_id, "customer_id": p.customer_id}

    def keys_of_key(self, key: str) -> dict:
        return {"account_id": key.split(":")[1] if key.count(":") == 2 else key, "customer_id": None}

    def apply(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> None:
        wb: WriteBackPlan = plan.native
        client, chosen, done = self.client, self.writes(plan, approved), [0]
        ctx.check_cancel()
        client.session.on_wait = lambda seconds, service: ctx.progress(done[0], len(chosen),
                                                                       wait_message(seconds, service))
        ctx.progress(0, len(chosen), f"writing to {client.label}")
        for i, p in enumerate(chosen):
            ctx.check_cancel()
            done[0] = i
            try:
                current = client.retrieve(p.account_id)
                if str(current.get(wb.cvr_field) or "").strip():
                    outcome.state["skipped"] = outcome.state.get("skipped", 0) + 1
                    outcome.error(f"{p.account_name}: the CRM field now holds {current.get(wb.cvr_field)!r}; left as "
                                  "it is", **self.error_keys(p))
                    continue
                client.update_fields(p.account_id, {wb.cvr_field: p.cvr})
            except RowError as exc:  # this account only (deleted or hidden in the CRM): report it, go on
                outcome.error(f"{p.account_name}: {exc}; nothing written", **self.error_keys(p))
                continue
            except ServiceError as exc:  # the runner stops the run with this reason; the written accounts stay
                plan.stopped = f"{exc} (after writing {len(outcome.written)} of {len(chosen)} account(s))"
                break
            outcome.written.append(p.key)
            self.accounts_written.append(p.account_id)
            ctx.progress(i + 1, len(chosen), f"writing to {client.label}")

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        wb: WriteBackPlan = plan.native
        return job_payload(run_id=ctx.run_id, dry_run=ctx.dry_run, errors=list(wb.errors) + outcome.errors,
                           stopped=plan.stopped, source=wb.source, cvr_field=wb.cvr_field,
                           proposed=len(self.writes(plan, approved) if plan.params.get("approved_only")
                                        else wb.proposals),
                           written=len(outcome.written), skipped=outcome.state.get("skipped", 0))

    def stats(self, payload: dict, plan: Plan) -> dict:
        return {"source": payload["source"], "proposed": payload["proposed"], "written": payload["written"],
                "skipped": payload["skipped"], "accounts_written": self.accounts_written[:1000]}

    def run_parameters(self, params: dict, plan: Plan | None, approved: set[str]) -> dict:
        if plan is None:  # read inside the run
            return {**params, "accounts": len(approved)}
        return {"source": plan.native.source, "cvr_field": plan.native.cvr_field, "accounts": len(plan.proposals)}


def apply_crm_write_back(engine: Engine, client: VtigerClient, plan: WriteBackPlan, *, actor: Actor,
                         approved: Iterable[str] | None = None, on_progress: ProgressCallback | None = None) -> dict:
    """Write the chosen proposals (all, or those whose key is in `approved`) into the CRM as one run through the
    job runner (role, per-kind lock, progress, Cancel, closed on every path); the payload."""
    _require_write_back(None, False)  # switched off says so first, whoever asks
    keys = None if approved is None else set(approved)
    chosen = [p for p in plan.proposals if keys is None or p.key in keys]
    job = CrmWriteBackJob(client)
    return runner.apply(job.kind, {}, keys or (), actor, plan=Plan(job.kind, {}, chosen, plan), engine=engine,
                        on_progress=on_progress, job=job)[1]
