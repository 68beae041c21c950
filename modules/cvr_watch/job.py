"""The cvr_watch job on the job contract (lib.jobs.contract): kind "cvr_watch.refresh".

plan: look up the customers that are due (never checked first, then the oldest check) through the cvrapi
cache, until LOOKUPS_PER_RUN requests are spent or the daily quota is used up; writes nothing.
apply: store each check's snapshot and its new alerts on the module's confined connection. With the module's
DRY_RUN on, an apply stores nothing either (the payload says so).
"""

from __future__ import annotations

from lib.jobs.contract import ApplyOutcome, Job, JobContext, Plan
from lib.jobs.payload import job_payload
from lib.modules import module_code, module_connection

MODULE = "cvr_watch"


def _watch():
    return module_code(MODULE, "watch.py")


class RefreshJob(Job):
    kind = "cvr_watch.refresh"
    title = "CVR watch: check the register"
    help = "look up Hub customers in the CVR register and raise alerts for ceased companies and changed names"
    required_role = "operator"
    action = "run the CVR watch"
    count_keys = ("checked", "from_cache", "lookups", "new_alerts", "left_for_next_run", "fresh")
    key_field = "customer_id"

    def plan(self, ctx: JobContext, **params) -> Plan:
        watch = _watch()
        client = ctx.closing(watch.make_client(ctx.engine, int(watch.setting("RECHECK_DAYS"))))
        planned = watch.plan_checks(ctx.engine, client, progress=ctx.progress, cancelled=ctx.cancelled)
        return Plan(self.kind, params, planned.checks, native=planned, errors=planned.errors, stopped=planned.stopped)

    def apply(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> None:
        watch = _watch()
        outcome.state["new_alerts"] = 0
        outcome.state["module_dry_run"] = watch.setting("DRY_RUN") is not False
        if ctx.dry_run or outcome.state["module_dry_run"] or not plan.proposals:
            return
        with module_connection(MODULE, ctx.engine) as conn:
            for check in plan.proposals:
                with conn.begin_nested():
                    outcome.state["new_alerts"] += watch.store_check(conn, check, ctx.run_id)
                outcome.written.append(check.key)
        ctx.progress(len(plan.proposals), len(plan.proposals), "stored")

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        planned = plan.native
        module_dry_run = outcome.state.get("module_dry_run", False)
        return job_payload(
            run_id=ctx.run_id, dry_run=ctx.dry_run or module_dry_run, errors=list(plan.errors) + outcome.errors,
            stopped=plan.stopped, checked=len(plan.proposals),
            from_cache=sum(1 for c in plan.proposals if c.from_cache), lookups=planned.lookups,
            new_alerts=outcome.state.get("new_alerts", 0), left_for_next_run=planned.left, fresh=planned.fresh,
            alerts_found=sum(len(c.alerts) for c in plan.proposals), module_dry_run=module_dry_run,
        )
