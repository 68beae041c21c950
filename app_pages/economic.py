"""e-conomic: preview links between Hub customers and e-conomic customers, approve, apply; the problems list."""

import pandas as pd
import streamlit as st

from lib.economic_client import EconomicClient
from lib.economic_relink import (
    COUNT_KEYS,
    IMPORT_KIND,
    OUTCOMES,
    plan_from_stored,
    preview_import,
)
from lib.errors import HubError
from lib.formatting import OUTCOME_WORDS, number
from lib.job_plans import customers_fingerprint
from lib.job_worker import APPLY, PREVIEW, latest_run, start_job
from lib.worker_jobs_services import register_steps
from ui.job_progress import show_finished, watch_run
from ui.job_widgets import show_counts
from ui.session import hub_engine, page_actor
from ui.stored_preview import stored_preview

PLAN, APPROVED = "economic_plan", "economic_approved"
KIND = "economic-relink"
OUTCOME_LABELS = OUTCOME_WORDS[KIND]  # the glossary's words

register_steps()  # the worker steps start_job looks up, in this server process too
me = page_actor("operator")
engine = hub_engine()
st.title("e-conomic")
st.caption("Links Hub customers to e-conomic customer numbers: CVR first, then name. e-conomic is only read. "
           "New links, and changed ones whose old number no longer exists in e-conomic, are written on Apply; "
           "a change of an existing link and an ambiguous match are written only when you approve the row.")


applying = latest_run(engine, KIND, dry_run=False)
if applying and applying["status"] == "running":  # it runs in a worker process: watch it from any tab
    st.subheader("Applying")
    watch_run(engine, applying["run_id"], me)
    st.stop()
importing = latest_run(engine, IMPORT_KIND, dry_run=False)
if importing and importing["status"] == "running":  # creating Hub customers runs in a worker process too
    st.subheader("Creating Hub customers from e-conomic")
    watch_run(engine, importing["run_id"], me)
    st.stop()

if st.button("Preview", type="primary", key="economic_preview", help="Read every e-conomic customer and match"):
    try:  # reading e-conomic runs in a worker process: it goes on when this tab is closed
        EconomicClient.from_settings().close()  # a missing token is said here, before any worker starts
        start_job(engine, KIND, PREVIEW, {}, user=me.email, role=me.role)
    except HubError as exc:
        st.error(str(exc))

# The newest preview and apply, from the database: coming back to the page shows them again.
preview = latest_run(engine, KIND, dry_run=True, user=me.email)
last = latest_run(engine, KIND, dry_run=False, user=me.email)
shown = stored_preview(engine, me, preview, last, reading="Reading e-conomic", decode=plan_from_stored,
                       state_key=PLAN, fingerprint=customers_fingerprint(engine))
plan, plan_id = shown.plan, shown.stored and shown.stored["id"]
if shown.fresh:
    st.session_state.pop(APPROVED, None)
if shown.show_last:
    result = last["stats"]
    show_finished(last, ("linked", "changed", "unchanged", "ambiguous", "unmatched"),
                  f"Applied as run {last['run_id']}: {result.get('linked', 0)} link(s) written, "
                  f"{result.get('changed', 0)} of them replacing an earlier number.")
imported = latest_run(engine, IMPORT_KIND, dry_run=False, user=me.email)
if imported and (preview is None or imported["run_id"] > preview["run_id"]):  # the import since the last preview
    show_finished(imported, ("created", "skipped"),
                  f"Created {imported['stats'].get('created', 0)} Hub customer(s) as run {imported['run_id']}; "
                  f"{imported['stats'].get('skipped', 0)} skipped.")

if plan is None:
    if not (preview and preview["status"] == "running"):
        st.info("Press Preview to read e-conomic and see what would be linked. Nothing is written until you apply.")
    st.stop()

proposals = plan.by_key()
approved = [k for k in st.session_state.get(APPROVED, []) if k in proposals]
counts = plan.counts(approved)
show_counts(counts, COUNT_KEYS)
t = plan.timings
st.caption(f"Read {number(plan.economic_customers)} e-conomic customers in {plan.requests} request(s) "
           f"({t['http_s']:.1f} s), matched in {t['matching_s']:.1f} s; preview from {plan.created_at:%Y-%m-%d %H:%M} "
           f"UTC, can be applied until {shown.stored['expires_at']:%H:%M} UTC while the Hub's customers are unchanged. "
           "Counts are what Apply does with the rows approved now.")

tab_proposals, tab_problems, tab_import = st.tabs(
    ["Proposals", f"Problems ({len(plan.problems)})", f"e-conomic customers without a Hub customer ({len(plan.without_hub)})"])

with tab_proposals:
    left, right = st.columns([2, 1])
    shown_outcomes = left.multiselect("Outcome", list(OUTCOMES), default=[o for o in OUTCOMES if o != "unchanged"],
                                      format_func=OUTCOME_LABELS.get, key="economic_outcomes")
    search = right.text_input("Search", key="economic_search", placeholder="Name, CVR or number").strip().casefold()

    def _hit(p) -> bool:
        if p.outcome not in shown_outcomes:
            return False
        if not search:
            return True
        haystack = " ".join(str(v) for v in (p.hub_name, p.hub_cvr, p.current_number, p.current_name,
                                             p.economic_number, p.economic_name, p.economic_cvr) if v is not None)
        return search in haystack.casefold()

    shown = [p for p in plan.proposals if _hit(p)]
    chosen = set(approved)

    def _action(p) -> str:
        if p.auto:
            return "written on Apply"
        if p.approvable:
            return "approved" if p.key in chosen else "needs approval"
        return ""

    st.caption(f"{number(len(shown))} of {number(len(plan.proposals))} Hub customers shown")
    if shown:
        st.dataframe(pd.DataFrame([{
            "row": p.key, "outcome": OUTCOME_LABELS[p.outcome], "action": _action(p), "Hub customer": p.hub_name,
            "Hub CVR": p.hub_cvr, "linked no.": p.current_number,
            "linked (e-conomic)": p.current_name or ("no longer exists" if p.current_number else None),
            "linked CVR": p.current_cvr, "proposed no.": p.economic_number, "e-conomic name": p.economic_name,
            "e-conomic CVR": p.economic_cvr, "score": p.score, "barred": p.barred,
            "problems": "; ".join(p.problems), "evidence": "; ".join(p.reasons),
        } for p in shown]), hide_index=True, width="stretch")

    approvable = [p.key for p in plan.proposals if p.approvable]
    if approvable:
        st.subheader("Approve")

        def _label(key: str) -> str:
            p = proposals[key]
            was = f" (now {p.current_number})" if p.current_number else ""
            return f"{p.hub_name}{was} → {p.economic_number} {p.economic_name} · score {p.score}"

        def _approve_shown() -> None:
            current = set(st.session_state.get(APPROVED, []))
            shown_keys = {p.key for p in shown}
            st.session_state[APPROVED] = [k for k in approvable if k in current or k in shown_keys]

        def _clear() -> None:
            st.session_state[APPROVED] = []

        st.multiselect("Approved rows (changed links and ambiguous matches)", approvable, format_func=_label,
                       key=APPROVED)
        b1, b2 = st.columns(2)
        b1.button("Approve all shown", key="economic_approve_shown", on_click=_approve_shown)
        b2.button("Clear approvals", key="economic_clear", on_click=_clear)

    st.divider()
    writes = plan.writes(approved)
    if st.button(f"Apply {len(writes)} link(s)", type="primary", key="economic_apply",
                 disabled=not writes):
        try:  # the worker writes the stored preview's links; it reads nothing from e-conomic
            start_job(engine, KIND, APPLY, {"params": {"plan_id": plan_id}, "approved": sorted(approved)},
                      user=me.email, role=me.role)
            st.rerun()
        except HubError as exc:
            st.error(str(exc))

with tab_problems:
    if plan.problems:
        kinds = sorted({p["kind"] for p in plan.problems})
        picked = st.multiselect("Kind", kinds, default=kinds, key="economic_problem_kinds")
        st.dataframe(pd.DataFrame([p for p in plan.problems if p["kind"] in picked]), hide_index=True,
                     width="stretch")
    else:
        st.caption("No problems found.")

with tab_import:
    st.caption("e-conomic customers no Hub customer is linked to or resembles. Creating them is a separate run "
               "(undo removes them again).")
    rows = preview_import(plan)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
        sure = st.checkbox(f"Create {len(rows)} Hub customer(s) from these e-conomic customers",
                           key="economic_import_ok")
        if st.button("Create Hub customers", key="economic_import", disabled=not sure):
            try:  # a worker creates them from the stored preview; watch it from any tab
                start_job(engine, IMPORT_KIND, APPLY, {"params": {"plan_id": plan_id}}, user=me.email, role=me.role)
                st.rerun()
            except HubError as exc:
                st.error(str(exc))
    else:
        st.caption("Every e-conomic customer is linked or proposed.")
