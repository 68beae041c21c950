"""CVR lookup: find CVR numbers for customers without one at cvrapi.dk; preview, accept, apply."""

import streamlit as st

from lib.cvr_lookup import (
    AMBIGUOUS,
    FOUND,
    NOT_FOUND,
    config_problem,
    count_missing_cvr,
    plan_from_stored,
    quota_status,
)
from lib.errors import HubError
from lib.formatting import number
from lib.job_plans import customers_fingerprint
from lib.job_worker import APPLY, PREVIEW, latest_run, start_job
from lib.worker_jobs_services import register_steps
from ui.cvr_widgets import OUTCOME_LABELS, approval_checkboxes, proposals_frame, quota_text
from ui.job_progress import show_finished, watch_run
from ui.job_widgets import show_counts
from ui.session import hub_engine, page_actor
from ui.stored_preview import stored_preview

PLAN, KIND = "cvr_plan", "cvr-lookup"
PLAN_KEYS = ("candidates", "found", "ambiguous", "not_found", "not_asked")
RESULT_KEYS = ("candidates", "found", "updated", "ambiguous", "not_found")

register_steps()  # the worker steps start_job looks up, in this server process too
me = page_actor("operator")
engine = hub_engine()
st.title("CVR lookup")
st.caption("Searches cvrapi.dk by name for customers without a CVR number. Only answers the matching engine "
           "is sure of are written; similar names, ceased companies and CVRs another customer holds wait for a "
           "person. Every answer is cached, so asking again costs nothing.")

quota = quota_status(engine)
left, right = st.columns(2)
left.metric("Customers without CVR", number(count_missing_cvr(engine)))
right.metric("Lookups left today (as far as known)", "no limit" if quota.left is None else number(quota.left))
st.caption(quota_text(quota))

applying = latest_run(engine, KIND, dry_run=False)
if applying and applying["status"] == "running":  # it runs in a worker process: watch it from any tab
    st.subheader("Applying")
    watch_run(engine, applying["run_id"], me)
    st.stop()

problem = config_problem()
if problem:
    st.error(f"The lookup is not configured: {problem}")
limit = st.number_input("Consider at most this many customers (0 = all)", min_value=0, value=0, step=1,
                        key="cvr_limit", help="Customers never asked come first; cached answers cost nothing.")
if st.button("Preview", type="primary", disabled=bool(problem), key="cvr_preview"):
    try:  # the lookups run in a worker process: they go on when this tab is closed
        start_job(engine, KIND, PREVIEW, {"limit": int(limit) or None}, user=me.email, role=me.role)
    except HubError as exc:
        st.error(str(exc))

# The newest preview and apply, from the database: coming back to the page shows them again.
preview = latest_run(engine, KIND, dry_run=True, user=me.email)
last = latest_run(engine, KIND, dry_run=False, user=me.email)
shown = stored_preview(engine, me, preview, last, reading="Looking up at cvrapi.dk", decode=plan_from_stored,
                       state_key=PLAN, fingerprint=customers_fingerprint(engine))
plan, plan_id = shown.plan, shown.stored and shown.stored["id"]
if shown.stored:
    stored = shown.stored
    st.caption(f"Preview {preview['run_id']} by {stored['created_by']} at {stored['created_at']:%H:%M} UTC; "
               f"it can be applied until {stored['expires_at']:%H:%M} UTC while the customers are unchanged.")
elif shown.show_last:
    done = "Applied as run" if last["status"] == "succeeded" else "Last apply: run"
    st.subheader(f"{done} {last['run_id']} ({last['started_at']:%Y-%m-%d %H:%M} UTC)")
    show_finished(last, RESULT_KEYS)

if plan is None:
    st.stop()

st.subheader("Proposals")
counts = {"candidates": plan.candidates, "found": plan.count(FOUND), "ambiguous": plan.count(AMBIGUOUS),
          "not_found": plan.count(NOT_FOUND), "not_asked": len(plan.not_asked), "stopped": plan.stopped}
show_counts(counts, PLAN_KEYS)
st.caption(f"{plan.requests_made} request(s) to cvrapi.dk; the rest came from the cache.")
shown = st.multiselect("Show", list(OUTCOME_LABELS), default=[FOUND, AMBIGUOUS], format_func=OUTCOME_LABELS.get,
                       key="cvr_show")
rows = [p for p in plan.proposals if p.outcome in shown]
if rows:
    st.dataframe(proposals_frame(rows), hide_index=True, width="stretch")
else:
    st.info("No proposals to show.")

approved = approval_checkboxes(plan)
to_write = plan.count(FOUND) + len(approved)
st.caption(f"Apply writes {to_write} CVR number(s): the {plan.count(FOUND)} found and {len(approved)} accepted.")
if st.button("Apply", type="primary", disabled=to_write == 0, key="cvr_apply"):
    try:  # the worker writes the stored preview's proposals; it asks cvrapi.dk nothing
        start_job(engine, KIND, APPLY, {"params": {"plan_id": plan_id}, "approved": sorted(approved)},
                  user=me.email, role=me.role)
    except HubError as exc:
        st.error(str(exc))
    else:
        st.rerun()
