"""The core jobs as the worker runs them: a preview that stores its plan, an apply that commits chunk by chunk.

Apply commits each chunk on its own, so Cancel (asked between chunks) keeps what was written before it and
undo reverts exactly that.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from sqlalchemy.engine import Engine

from lib.db import lost_connection, write_transaction
from lib.errors import DatabaseLost
from lib.import_report import ErrorReportFiles
from lib.job_plans import claim_plan, store_plan, usable_plan
from lib.job_worker import Progress, WorkerJob, jobs_dir, register
from lib.jobs.import_subscriptions import ImportSubscriptionsJob
from lib.runs import Run, RunCancelled
from lib.subscription_import import (
    ONE_PASS_CHUNK_ROWS,
    CustomerIndex,
    Planner,
    PlanOutdated,
    PlanTally,
    SubscriptionIndex,
    _snapshot,
    write_planned_chunk,
)
from lib.subscription_rows import iter_rows, open_export

IMPORT_KIND = ImportSubscriptionsJob.kind


def import_fingerprint(engine: Engine) -> str:
    """What the import's plan depends on: counts, newest ids and last changes of customers and subscriptions."""
    with engine.connect() as conn:
        return json.dumps(_snapshot(conn))


def _source(params: dict) -> dict:
    return {"source": Path(params["path"]), "file_name": params.get("file_name"), "sheet": params.get("sheet"),
            "columns": params.get("columns")}


def _import_preview(engine: Engine, run: Run, params: dict) -> dict:
    """Read, validate and plan the file a chunk at a time; store the counts, the first PREVIEW_ROWS rows of each
    outcome and the first errors (the error report files get all of them): memory follows the chunk."""
    progress = Progress(run)
    progress(0, 0, "reading the workbook")
    src = _source(params)
    opened = open_export(src["source"], file_name=src["file_name"], sheet=src["sheet"], columns=src["columns"])
    table = opened.table
    try:
        with engine.connect() as conn:
            snapshot = _snapshot(conn)
            customers = CustomerIndex(conn)
            planner = Planner(customers, SubscriptionIndex(conn), set(table.mapping))
        tally = PlanTally(customers.names)
        report = ErrorReportFiles(jobs_dir() / "reports", f"run-{run.id}-errors", list(table.mapping))
        try:
            for chunk in iter_rows(table, ONE_PASS_CHUNK_ROWS):
                planned = planner.plan(chunk)
                tally.add(planned)
                report.add(planned)
                progress(tally.rows, table.height, f"planned {tally.rows:,} rows")
        finally:
            report_paths = report.close()  # a failed preview's partial report is closed too (never offered)
    finally:
        table.close()
    stored = {
        "export": {"file_name": opened.file_name, "sheet": table.sheet, "sheet_names": opened.sheet_names,
                   "header_row": table.header_row, "headers": table.headers, "mapping": table.mapping,
                   "unrecognised_headers": table.unrecognised},
        "counts": tally.counts, "rows": tally.table(), "errors": tally.errors, "reports": report_paths,
        "rows_total": tally.rows, "errors_total": tally.error_count, "rows_kept": tally.keep,
    }
    summary = {**tally.stats(opened.file_name, table.sheet), "errors": tally.error_count}
    plan_id = store_plan(engine, IMPORT_KIND, run_id=run.id, user=run.user, parameters=params, summary=summary,
                         plan=stored, fingerprint=json.dumps(snapshot))
    progress(tally.rows, tally.rows, "preview stored")
    return {**summary, "plan_id": plan_id}


def _import_apply(engine: Engine, run: Run, params: dict) -> dict:
    stored = usable_plan(engine, params["plan_id"], IMPORT_KIND, fingerprint=None, with_plan=False,
                         again="preview the file again")
    claim_plan(engine, stored["id"], run.id)
    src = _source(stored["parameters"])
    opened = open_export(src["source"], file_name=src["file_name"], sheet=src["sheet"], columns=src["columns"])
    return import_in_chunks(engine, run, opened, expected=tuple(json.loads(stored["fingerprint"])),
                            progress=Progress(run), chunk_rows=int(params.get("chunk_rows") or ONE_PASS_CHUNK_ROWS))


def import_in_chunks(engine: Engine, run: Run, opened, *, expected: tuple | None, progress: Progress,
                     chunk_rows: int = ONE_PASS_CHUNK_ROWS) -> dict:
    """Plan and write the export a chunk at a time, each chunk committed on its own, asking for Cancel in between.

    The indexes are read once, in the first chunk's transaction, where the fingerprint is checked against the
    preview's: the plan written is the one the person saw. The per-kind run lock keeps other imports out.
    """
    table = opened.table
    total = table.height
    tally = PlanTally(keep=0)  # counts only: the stats at the end, whatever the file's length
    written = {"created": 0, "updated": 0}
    planner: Planner | None = None
    snapshot: tuple = ()

    def result() -> dict:
        return {**tally.stats(opened.file_name, table.sheet), "rows_total": total, **written}

    try:
        for chunk in iter_rows(table, chunk_rows):
            progress.check_cancel()
            with write_transaction(engine) as conn:
                if planner is None:
                    snapshot = _snapshot(conn)
                    if expected is not None and snapshot != expected:
                        raise PlanOutdated("customers or subscriptions changed since the preview; preview the file again")
                    customers = CustomerIndex(conn)
                    planner = Planner(customers, SubscriptionIndex(conn), set(table.mapping))
                planned = planner.plan(chunk)
                created, updated = write_planned_chunk(conn, planned, run)
            tally.add(planned)
            written["created"] += created
            written["updated"] += updated
            progress(tally.rows, total, f"{tally.rows:,} of {total:,} rows: {written['created']:,} created, "
                                        f"{written['updated']:,} updated")
    except RunCancelled as exc:
        cancelled = RunCancelled(f"{exc} after {tally.rows:,} of {total:,} rows (those are kept; undo reverts them)")
        cancelled.stats = result()
        raise cancelled from exc
    except Exception as exc:
        if not lost_connection(engine, exc):
            raise
        lost = DatabaseLost(f"the database connection was lost during the import after {tally.rows:,} of {total:,} "
                            f"rows; the {written['created']:,} created and {written['updated']:,} updated in "
                            "committed chunks are kept (undo reverts them)")
        lost.stats = result()
        raise lost from None
    finally:
        table.close()  # ends the reading child on every path
    out = result()
    progress(total, total, "done")
    return out


register(WorkerJob(IMPORT_KIND, "operator", _import_preview, _import_apply))


# --- crm-sync: reading every CRM account takes minutes at the CRM's rate limit, so the preview runs here too ----

CRM_KIND = "crm-sync"


def _crm_preview(engine: Engine, run: Run, params: dict) -> dict:
    from lib.crm_sync import dry_run_payload, open_client, plan_crm_sync

    progress = Progress(run)
    with open_client(params["source"]) as client:
        plan = plan_crm_sync(engine, client, on_progress=progress)
    stored = {"source": plan.source, "cvr_field": plan.cvr_field, "stopped": plan.stopped,
              "missing": getattr(plan, "missing", 0), "errors": plan.errors,
              "accounts": [asdict(a) for a in plan.accounts], "proposals": [asdict(p) for p in plan.proposals]}
    summary = {k: v for k, v in dry_run_payload(plan).items() if k != "errors"}
    plan_id = store_plan(engine, CRM_KIND, run_id=run.id, user=run.user, parameters=params, summary=summary,
                         plan=stored, fingerprint="")
    return {**summary, "plan_id": plan_id}


def crm_plan_from_stored(stored: dict):
    """The CrmSyncPlan a worker's preview stored (for the page: the same object a preview in the page made)."""
    from lib.crm_sync import CrmProposal, CrmSyncPlan
    from lib.vtiger_client import CrmAccount

    plan = CrmSyncPlan(
        stored["source"], stored["cvr_field"], [CrmAccount(**a) for a in stored["accounts"]],
        [CrmProposal(**{**p, "reasons": tuple(p["reasons"])}) for p in stored["proposals"]],
        stored["errors"], stored["stopped"])
    if hasattr(plan, "missing"):
        plan.missing = stored.get("missing", 0)
    return plan


register(WorkerJob(CRM_KIND, "operator", _crm_preview, None))
