"""Template Module's example job on the job contract (docs/JOBS.md): tidy item titles.

`manage.py job run template_module.tidy [--apply] [--json]` previews (or writes) it; the module's page shows
its panel. plan: every item whose title has stray spaces; write_row: one item, re-checked inside the write
transaction (the runner gives each row its own savepoint on the module's confined connection) and written with
`audited_update`, so undoing the run restores the titles. The module's safety switches hold: READ_ONLY
refuses an apply, DRY_RUN turns it into a preview.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from lib.errors import InputError, RowError
from lib.jobs.contract import ApplyOutcome, Job, JobContext, Plan
from lib.jobs.payload import job_payload
from lib.modules import audited_update, get_module_config, module_connection, module_table

MODULE = "template_module"


@dataclass(frozen=True)
class Tidy:
    key: str  # "item:<id>"
    item_id: int
    title: str
    tidy: str


def tidy(title: str) -> str:
    return " ".join(title.split())


class TidyTitles(Job):
    kind = f"{MODULE}.tidy"
    title = "Tidy item titles"
    help = "remove stray spaces from the titles of Template Module's items"
    required_role = "operator"
    action = "tidy Template Module's items"
    count_keys = ("items", "to_tidy", "tidied")
    key_field = "item_id"

    def check(self, ctx: JobContext, **params) -> None:
        if not ctx.dry_run and get_module_config(MODULE, "READ_ONLY", True) is not False:
            raise InputError(f"{MODULE} is read-only: switch READ_ONLY off in its settings to let the job write")

    def plan(self, ctx: JobContext, **params) -> Plan:
        with module_connection(MODULE, ctx.engine) as conn:
            rows = conn.execute(text(f"SELECT id, title FROM {module_table(MODULE, 'items')} ORDER BY id")).all()
        proposals = [Tidy(f"item:{i}", i, t, tidy(t)) for i, t in rows if tidy(t) != t]
        return Plan(self.kind, params, proposals, native={"items": len(rows)})

    def writes(self, plan: Plan, approved: set[str]) -> list[Tidy]:
        if get_module_config(MODULE, "DRY_RUN", True) is not False:
            return []  # DRY_RUN: the apply writes nothing (the payload says module_dry_run)
        return plan.proposals

    def write_row(self, ctx: JobContext, conn: Connection, p: Tidy, outcome: ApplyOutcome) -> None:
        if ctx.dry_run:
            return
        now = conn.execute(text(f"SELECT title FROM {module_table(MODULE, 'items')} WHERE id = :id"),
                           {"id": p.item_id}).scalar()
        if now != p.title:
            raise RowError(f"item {p.item_id} changed or was deleted since the preview; not tidied", key=p.item_id)
        # audited: the change lands in the audit log with this run, so `manage.py undo RUN_ID` puts it back
        audited_update(conn, MODULE, "items", p.item_id, {"title": p.tidy}, run_id=ctx.run_id, user=ctx.user)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        module_dry_run = not ctx.dry_run and get_module_config(MODULE, "DRY_RUN", True) is not False
        return job_payload(run_id=ctx.run_id, dry_run=ctx.dry_run, errors=outcome.errors,
                           items=plan.native["items"], to_tidy=len(plan.proposals), tidied=len(outcome.written),
                           module_dry_run=module_dry_run)
