"""The previews of the jobs that call outside services, as the worker runs them: CVR lookup, e-conomic relink and
the CRM write-back.

Each asks its service (minutes at cvrapi.dk's, e-conomic's or the CRM's pace), stores the plan (lib.job_plans) and
ends. Their applies go through the job runner with the stored plan's id (`{"params": {"plan_id": N}}`): the job
takes the plan it stored, refused when it expired or was applied, so what is written is what the person approved.
The CVR lookup and relink plans also carry a fingerprint of the Hub's customers (refused when they changed); the
write-back reads the CRM again in its apply and writes a previewed account only with the CVR the preview showed.
"""

from __future__ import annotations

from dataclasses import asdict

from sqlalchemy.engine import Engine

from lib.job_plans import customers_fingerprint, get_plan, store_plan
from lib.job_worker import Progress, WorkerJob, register
from lib.runs import Run

CVR_KIND, ECONOMIC_KIND, WRITE_BACK_KIND = "cvr-lookup", "economic-relink", "crm-write-back"
CANCEL_CHECK_SECONDS = 1.0


def _watched(run: Run) -> Progress:
    """A progress callback that also stops the preview (RunCancelled) soon after someone pressed Cancel."""
    return Progress(run, cancel_every=CANCEL_CHECK_SECONDS)


def _store(engine: Engine, kind: str, run: Run, params: dict, summary: dict, plan: dict, fingerprint: str) -> dict:
    plan_id = store_plan(engine, kind, run_id=run.id, user=run.user, parameters=params, summary=summary, plan=plan,
                         fingerprint=fingerprint)
    return {**summary, "plan_id": plan_id}


def _cvr_preview(engine: Engine, run: Run, params: dict) -> dict:
    from lib.cvr_lookup import AMBIGUOUS, FOUND, NOT_FOUND, make_client, plan_cvr_lookup, stored_plan

    fingerprint = customers_fingerprint(engine)  # before reading: a change while it reads outdates the plan
    limit = params.get("limit")
    with make_client(engine) as client:
        plan = plan_cvr_lookup(engine, client, limit=int(limit) if limit else None, on_progress=_watched(run))
    summary = {"candidates": plan.candidates, "found": plan.count(FOUND), "ambiguous": plan.count(AMBIGUOUS),
               "not_found": plan.count(NOT_FOUND), "not_asked": len(plan.not_asked), "requests": plan.requests_made,
               "stopped": plan.stopped}
    return _store(engine, CVR_KIND, run, params, summary, stored_plan(plan), fingerprint)


def _economic_preview(engine: Engine, run: Run, params: dict) -> dict:
    from lib.economic_client import PAGE_SIZE, EconomicClient, EconomicCustomer
    from lib.economic_relink import plan_economic_relink, stopped_message, stored_plan
    from lib.errors import ServiceError

    fingerprint = customers_fingerprint(engine)
    read: list[EconomicCustomer] = []
    with EconomicClient.from_settings() as client:
        try:
            plan = plan_economic_relink(engine, client, on_progress=_watched(run), read=read)
        except ServiceError as exc:  # the run is stopped with where it stopped; nothing stored
            raise ServiceError(stopped_message(exc, len(read), client.page_size or PAGE_SIZE)) from exc
    summary = {**plan.counts(), "requests": plan.requests, "problems": len(plan.problems)}
    return _store(engine, ECONOMIC_KIND, run, params, summary, stored_plan(plan), fingerprint)


def _crm_write_back_preview(engine: Engine, run: Run, params: dict) -> dict:
    """The CRM accounts whose empty CVR field the Hub can fill (stored links only: what the apply finds again).

    `sync_plan_id`: the sync preview the person is looking at; its accounts are used (no second read of the CRM).
    """
    from lib.crm_sync import open_client, plan_crm_write_back
    from lib.worker_jobs import crm_plan_from_stored

    sync_plan = None
    if params.get("sync_plan_id"):
        sync_plan = crm_plan_from_stored(get_plan(engine, int(params["sync_plan_id"]))["plan"])
        if sync_plan.source != params["source"]:
            sync_plan = None
    watched = _watched(run)
    with open_client(params["source"]) as client:
        plan = plan_crm_write_back(engine, client, sync_plan=sync_plan, planned_links=False, on_progress=watched)
    watched.check_cancel()  # a Cancel during the last page of the read: nothing stored
    summary = {"source": plan.source, "cvr_field": plan.cvr_field, "proposed": len(plan.proposals),
               "errors": len(plan.errors), "accounts_read": "sync preview" if sync_plan else "CRM"}
    stored = {"source": plan.source, "cvr_field": plan.cvr_field, "errors": plan.errors,
              "proposals": [asdict(p) for p in plan.proposals]}
    return _store(engine, WRITE_BACK_KIND, run, params, summary, stored, "")


def register_steps() -> None:
    """Register the previews (again: idempotent). No apply step: the job runner applies the stored plan
    (lib/jobs/cvr_lookup.py, lib/jobs/economic_relink.py, lib/jobs/crm_sync.py: CrmWriteBackJob)."""
    register(WorkerJob(CVR_KIND, "operator", _cvr_preview, None))
    register(WorkerJob(ECONOMIC_KIND, "operator", _economic_preview, None))
    register(WorkerJob(WRITE_BACK_KIND, "operator", _crm_write_back_preview, None))


register_steps()
