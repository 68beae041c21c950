"""The subscription import job on the contract: read, validate and plan with lib.subscription_import; write
in bulk (COPY) in one transaction, so the job overrides `apply` instead of writing row by row.

Rows are validated and planned before anything is written (a bad row is rejected in the plan, never
written), so the bulk write has no per-row failures to skip; a constraint the plan could not foresee fails
the run and rolls back everything it wrote.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sqlalchemy.engine import Engine

from lib.errors import InputError
from lib.jobs import runner
from lib.jobs.contract import ApplyOutcome, Job, JobContext, Plan, ProgressCallback
from lib.roles import Actor
from lib.subscription_import import (
    ImportPlan,
    check_plan_current,
    plan_import,
    preview_import,
    write_in_one_pass,
    write_plan,
)
from lib.subscription_rows import OpenedExport, open_export, read_export

COUNT_KEYS = ("rows", "created", "updated", "unchanged", "skipped_locked", "unmatched")


class ImportSubscriptionsJob(Job):
    kind = "import-subscriptions"
    title = "Import subscriptions"
    help = "import subscriptions from a BMC Office Excel export (preview unless --apply)"
    usage = "FILE [--sheet NAME]"
    doc = "BMC Office Excel import"
    action = "import subscriptions"
    page = "app_pages/import_subscriptions.py"
    icon = ":material/upload_file:"
    count_keys = COUNT_KEYS
    key_field = "row"
    plan_in_run = True  # --apply validates, plans and writes in one pass, inside the run

    def __init__(self, source: Path | str | bytes | None = None, keep_plan: bool = False):
        self.source = source  # bytes of an upload (the page); else params["file"], a path
        self.opened: OpenedExport | None = None
        self.keep_plan = keep_plan  # the library's preview is applied later; the command's only reports

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("file", metavar="FILE", help="the .xlsx or .xlsm export")
        parser.add_argument("--sheet", metavar="NAME", help='sheet to read (default "Abonnementer", else the first '
                                                            "sheet with the required columns)")

    def params_from_args(self, args: argparse.Namespace) -> dict:
        return {"file": args.file, "sheet": args.sheet}

    def _source(self, file: str | None) -> Path | str | bytes:
        source = self.source if self.source is not None else file
        if source is None:
            raise InputError("no file to import")
        return source

    def plan(self, ctx: JobContext, *, file: str | None = None, sheet: str | None = None,
             file_name: str | None = None, **_ignored) -> Plan:
        if ctx.dry_run and not self.keep_plan:  # counted a chunk at a time: memory follows the chunk
            return as_plan(preview_import(ctx.engine, open_export(self._source(file), file_name=file_name, sheet=sheet)))
        native = plan_import(ctx.engine, read_export(self._source(file), file_name=file_name, sheet=sheet))
        return as_plan(native)

    def check(self, ctx: JobContext, *, file: str | None = None, sheet: str | None = None,
              file_name: str | None = None, **_ignored) -> None:
        if not ctx.dry_run:  # an unreadable file or sheet is refused before a run is recorded
            self.opened = open_export(self._source(file), file_name=file_name, sheet=sheet)

    def apply_in_one_pass(self, ctx: JobContext, **params) -> Plan:
        opened = self.opened
        if opened is None:
            self.check(ctx, **params)
            opened = self.opened
        return as_plan(write_in_one_pass(ctx.engine, opened, ctx.run, user=ctx.user,
                                         on_progress=ctx.progress_in_transaction))

    def check_plan(self, ctx: JobContext, plan: Plan) -> None:
        check_plan_current(ctx.engine, plan.native)

    def apply(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> None:
        if not ctx.dry_run:
            write_plan(ctx.engine, plan.native, ctx.run, user=ctx.user, on_progress=ctx.progress_in_transaction)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        payload = plan.native.summary(run_id=ctx.run_id, dry_run=ctx.dry_run)
        payload["errors"] += outcome.errors
        return payload

    def stats(self, payload: dict, plan: Plan) -> dict:
        return plan.native.stats()

    def run_parameters(self, params: dict, plan: Plan | None, approved: set[str]) -> dict:
        if plan is not None:
            return {"file": plan.native.export.file_name, "sheet": plan.native.export.sheet}
        if self.opened is not None:
            return {"file": self.opened.file_name, "sheet": self.opened.table.sheet}
        return {"file": params.get("file_name") or params.get("file"), "sheet": params.get("sheet")}

    def failure_payload(self, dry_run: bool, message: str) -> dict:
        return {"run_id": None, "dry_run": dry_run, "rows": 0, "created": 0, "updated": 0, "unchanged": 0,
                "skipped_locked": 0, "unmatched": 0, "errors": [{"row": None, "message": message}]}

    def summary(self, data: dict) -> str:
        head = ("preview (nothing written; add --apply to write)" if data["dry_run"]
                else f"applied as run {data['run_id']}")
        lines = [f"{head}: {data['rows']} row(s) read, {data['created']} to create" if data["dry_run"] else
                 f"{head}: {data['rows']} row(s) read, {data['created']} created",
                 f"  updated {data['updated']}, unchanged {data['unchanged']}, skipped (locked) "
                 f"{data['skipped_locked']}, unmatched {data['unmatched']}, rejected "
                 f"{len(data['errors']) - data['unmatched']}"]
        lines += [f"  row {e['row']}: {e['message']}" for e in data["errors"]]
        return "\n".join(lines)


def as_plan(native: ImportPlan) -> Plan:
    return Plan(ImportSubscriptionsJob.kind, {}, [], native)


def run_import(engine: Engine, source: Path | str | bytes, *, file_name: str | None = None, sheet: str | None = None,
               apply: bool = False, actor: Actor, on_progress: ProgressCallback | None = None
               ) -> tuple[ImportPlan, dict]:
    """Read, plan and (with `apply`, in one pass) write; the plan and the summary (interface.md JSON keys)."""
    job = ImportSubscriptionsJob(source, keep_plan=True)
    params = {"file": str(source) if isinstance(source, str | Path) else None, "sheet": sheet, "file_name": file_name}
    if apply:
        plan, payload = runner.apply(job.kind, params, (), actor, engine=engine, on_progress=on_progress, job=job)
    else:
        plan, payload = runner.preview(job.kind, params, actor, engine=engine, on_progress=on_progress, job=job)
    return plan.native, payload


def apply_import_plan(engine: Engine, plan: ImportPlan, *, actor: Actor,
                      on_progress: ProgressCallback | None = None) -> dict:
    """Write a preview's creates and updates in one transaction, as one run; the summary with run_id."""
    return runner.apply(ImportSubscriptionsJob.kind, {}, (), actor, plan=as_plan(plan), engine=engine,
                        on_progress=on_progress, job=ImportSubscriptionsJob())[1]
