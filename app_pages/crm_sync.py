"""CRM sync: preview what vTiger / Simply-CRM would link and fill, resolve conflicts per row, apply; write-back."""

import pandas as pd
import streamlit as st

from lib.crm_sync import (
    COUNT_KEYS,
    OUTCOMES,
    SOURCES,
    WRITE_BACK_KIND,
    open_client,
    write_back_enabled,
)
from lib.errors import HubError
from lib.formatting import OUTCOME_WORDS
from lib.job_worker import APPLY, PREVIEW, latest_run, start_job
from lib.vtiger_client import LABELS
from lib.worker_jobs import crm_plan_from_stored
from ui.job_progress import show_finished, watch_run
from ui.job_widgets import show_errors, show_outcome_counts
from ui.session import hub_engine, page_actor
from ui.stored_preview import stored_preview

MAX_ROW_WIDGETS = 200
KEEP, TAKE = "keep Hub", "take CRM"
KIND = "crm-sync"
OUTCOME_LABELS = OUTCOME_WORDS[KIND]  # the glossary's words

me = page_actor("operator")
engine = hub_engine()
st.title("CRM sync")
st.caption("Links CRM accounts to Hub customers (stored account id, then CVR, then name) and fills the Hub's "
           "missing CVR numbers. The CRM is only read. Conflicting CVRs are never overwritten unless you choose "
           "“take CRM” for that row.")

applying = latest_run(engine, KIND, dry_run=False)
if applying and applying["status"] == "running":  # it runs in a worker process: watch it from any tab
    st.subheader("Applying")
    watch_run(engine, applying["run_id"], me)
    st.stop()

# The newest preview and apply of this CRM, from the database: a preview reads every account (minutes at the
# CRM's rate limit) in a worker process, so it goes on when this tab is closed and is shown when you come back.
preview = latest_run(engine, KIND, dry_run=True, user=me.email)
last_source = (preview or {}).get("parameters", {}).get("source")  # coming back: the CRM of your last preview
source = st.selectbox("CRM", SOURCES, index=SOURCES.index(last_source) if last_source in SOURCES else 0,
                      format_func=LABELS.get, key="crm_source")

if st.button("Preview", type="primary", key="crm_preview"):
    try:
        open_client(source).close()  # a missing setting is said here, before any worker starts
        start_job(engine, KIND, PREVIEW, {"source": source}, user=me.email, role=me.role)
    except HubError as exc:
        st.error(str(exc))

preview = latest_run(engine, KIND, dry_run=True, user=me.email)  # a Preview pressed above is newer
if preview and preview["parameters"].get("source") != source:
    preview = None
last = latest_run(engine, KIND, dry_run=False, user=me.email)
if last and last["parameters"].get("params", {}).get("source") != source:
    last = None
shown = stored_preview(engine, me, preview, last, reading=f"Reading {LABELS[source]}", decode=crm_plan_from_stored,
                       state_key="crm_plan")
plan = shown.plan
sync_plan_id = shown.stored and shown.stored["id"]  # the sync preview shown: the write-back uses its accounts
if shown.show_last:
    result = last["stats"]
    show_finished(last, COUNT_KEYS, f"Applied as run {last['run_id']}: {result.get('updated', 0)} CVR number(s) "
                                    f"written, {result.get('linked', 0)} account id(s) stored.")

if plan is not None:
    st.subheader(f"Preview: {len(plan.accounts)} {plan.label} account(s)")
    if plan.cvr_field:
        st.caption(f"CVR field in {plan.label}: {plan.cvr_field}")
    else:
        st.warning(f"{plan.label} has no Accounts field labelled CVR: only links can be made.")
    if plan.stopped:
        st.warning(f"Reading stopped early: {plan.stopped}. Only the accounts read are proposed.")
    show_outcome_counts(KIND, [p.outcome for p in plan.proposals], total=("Accounts", len(plan.accounts)))

    shown = st.multiselect("Show", OUTCOMES, default=list(OUTCOMES), format_func=OUTCOME_LABELS.get,
                           key="crm_filter")
    rows = [p for p in plan.proposals if p.outcome in shown]
    if rows:
        st.dataframe(pd.DataFrame([{
            "outcome": OUTCOME_LABELS[p.outcome], "account": p.account_id, "CRM name": p.account_name,
            "CRM CVR": p.crm_cvr or p.crm_cvr_raw or "", "customer": p.customer_id, "Hub name": p.customer_name or "",
            "Hub CVR": p.hub_cvr or "", "linked by": p.link_by or "", "score": p.score,
            "evidence": "; ".join(p.reasons), "Hub CVR from": p.cvr_source or "",
        } for p in rows]), hide_index=True, width="stretch")
    else:
        st.info("Nothing to show with this filter.")

    conflicts = [p for p in plan.proposals if p.outcome == "conflict"]
    ambiguous = [p for p in plan.proposals if p.outcome == "ambiguous"]
    if conflicts:
        st.markdown(f"**Conflict ({len(conflicts)})** — choose per row; “keep Hub” changes nothing.")
        for p in conflicts[:MAX_ROW_WIDGETS]:
            st.radio(
                f"{p.account_name} ({p.account_id}) ↔ customer {p.customer_id} {p.customer_name}: "
                f"Hub {p.hub_cvr or '—'} / {plan.label} {p.crm_cvr or '—'}"
                + (f" — Hub value from {p.cvr_source}" if p.cvr_source else ""),
                [KEEP, TAKE], key=f"crm_res_{p.key}", horizontal=True, disabled=not p.approvable,
                help=None if p.approvable else "; ".join(p.reasons),
            )
    if ambiguous:
        st.markdown(f"**Ambiguous ({len(ambiguous)})** — tick to link the account to the proposed customer.")
        for p in ambiguous[:MAX_ROW_WIDGETS]:
            st.checkbox(
                f"{p.account_name} ({p.account_id}) → "
                + (f"customer {p.customer_id} {p.customer_name}" if p.customer_id else "no candidate")
                + (f", fill CVR {p.new_cvr}" if p.new_cvr else ""),
                key=f"crm_ok_{p.key}", disabled=not p.approvable, help="; ".join(p.reasons),
            )
    if len(conflicts) > MAX_ROW_WIDGETS or len(ambiguous) > MAX_ROW_WIDGETS:
        st.caption(f"Only the first {MAX_ROW_WIDGETS} rows of each list can be decided here; apply, then preview "
                   "again for the rest.")

    approved = {p.key for p in conflicts if st.session_state.get(f"crm_res_{p.key}") == TAKE}
    approved |= {p.key for p in ambiguous if st.session_state.get(f"crm_ok_{p.key}")}
    counts = plan.counts(approved)
    st.caption(f"Apply will write {counts['updated']} CVR number(s) and store {counts['linked']} account id(s)"
               + (f", including {len(approved)} row(s) you chose." if approved else "."))
    nothing = not (counts["updated"] or counts["linked"])
    if st.button("Apply", key="crm_apply", disabled=nothing,
                 help="Nothing would be written: choose rows above, or preview again later" if nothing else None):
        try:  # the worker reads the CRM again (minutes at its rate limit) and writes; watch it from any tab
            start_job(engine, KIND, APPLY, {"params": {"source": source}, "approved": sorted(approved)},
                      user=me.email, role=me.role)
            st.rerun()
        except HubError as exc:
            st.error(str(exc))

if write_back_enabled():
    st.divider()
    st.subheader(f"Write back to {LABELS[source]}")
    st.caption("Fills the CRM's empty CVR field from the Hub for accounts linked in the Hub. Preview first; the CRM "
               "is written only when you press “Write to CRM”. Both run in a worker process (the preview reads every "
               "account unless a sync preview is shown; the write reads the CRM again and writes the previewed "
               "accounts that still need it, with the CVR shown): minutes at the CRM's rate limit, you may leave the "
               "page. CRM writes cannot be undone from the Hub.")
    writing = latest_run(engine, WRITE_BACK_KIND, dry_run=False)
    if writing and writing["status"] == "running":  # in a worker process: watch it from any tab
        st.markdown(f"**Writing to {LABELS.get((writing['parameters'].get('params') or {}).get('source'), 'the CRM')}**")
        watch_run(engine, writing["run_id"], me, kept="what was written to the CRM stays (the Hub cannot undo it)")
    else:
        if st.button("Preview write-back", key="crm_wb_preview"):
            try:  # a missing setting is said here, before any worker starts
                open_client(source).close()
                start_job(engine, WRITE_BACK_KIND, PREVIEW, {"source": source, "sync_plan_id": sync_plan_id},
                          user=me.email, role=me.role)
            except HubError as exc:
                st.error(str(exc))
        wb_preview = latest_run(engine, WRITE_BACK_KIND, dry_run=True, user=me.email)
        if wb_preview and wb_preview["parameters"].get("source") != source:
            wb_preview = None
        done = latest_run(engine, WRITE_BACK_KIND, dry_run=False, user=me.email)
        if done and (done["parameters"].get("params") or done["parameters"]).get("source") != source:
            done = None
        wb_shown = stored_preview(engine, me, wb_preview, done, reading=f"**Reading {LABELS[source]} for the write-back**",
                                  decode=lambda plan: plan, state_key="crm_wb_plan", what="write-back preview",
                                  heading=st.markdown, kept="nothing was written")
        if wb_shown.plan is not None:
            wb_stored, wb_plan = wb_shown.stored, wb_shown.plan
            proposals = wb_plan["proposals"]
            st.caption(f"Write-back preview {wb_preview['run_id']} of {wb_stored['created_at']:%H:%M} UTC, "
                       f"CVR field {wb_plan['cvr_field']}")
            if proposals:
                st.dataframe(pd.DataFrame([{
                    "account": w["account_id"], "CRM name": w["account_name"], "customer": w["customer_id"],
                    "Hub name": w["customer_name"], "CVR to write": w["cvr"], "link": w["linked_by"],
                } for w in proposals]), hide_index=True, width="stretch")
            else:
                st.info("No linked account has an empty CVR field that the Hub can fill.")
            show_errors({"errors": wb_plan["errors"]})
            if proposals and st.button(f"Write to CRM ({len(proposals)})", key="crm_wb_apply"):
                try:  # the stored preview: each account written only with the CVR shown here
                    start_job(engine, WRITE_BACK_KIND, APPLY,
                              {"params": {"source": source, "plan_id": wb_stored["id"]},
                               "approved": sorted(w["key"] for w in proposals)},
                              user=me.email, role=me.role)
                    st.rerun()
                except HubError as exc:
                    st.error(str(exc))
        elif wb_shown.show_last:
            stats = done["stats"]
            show_finished(done, ("proposed", "written", "skipped"),
                          f"Written to {LABELS[source]} as run {done['run_id']}: {stats.get('written', 0)} "
                          f"account(s), {stats.get('skipped', 0)} skipped.")
