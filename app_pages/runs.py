"""Runs: the history of every job and edit, its statistics and changes, and undo."""

import json

import streamlit as st

from lib.errors import HubError
from lib.runs import UndoRefused, get_run, later_changes, list_runs, run_changes, run_users, undo_run
from ui.job_progress import running_panel
from ui.session import hub_engine, page_actor
from ui.tables import changes_frame, runs_frame

me = page_actor()
engine = hub_engine()
st.title("Runs")
running_panel(engine, me)  # live progress and Cancel of every running job, from any tab or replica

left, right = st.columns(2)
person = left.selectbox("Started by", ["everyone", *run_users(engine)], key="runs_person")
kind = right.text_input("Kind", key="runs_kind", placeholder="e.g. cvr-lookup")
runs = list_runs(engine, limit=500, kind=kind.strip() or None, user=None if person == "everyone" else person)
if not runs:
    st.info("No runs match.")
    st.stop()
st.dataframe(runs_frame(runs), hide_index=True, width="stretch")

labels = {r["run_id"]: f"#{r['run_id']} {r['kind']} · {r['status']} · {r['triggered_by']}" for r in runs}
default = st.query_params.get("run")
options = list(labels)
index = options.index(int(default)) if default and default.isdigit() and int(default) in labels else 0
picked = st.selectbox("Run", options, index=index, format_func=labels.get, key="runs_pick")
run = get_run(engine, picked)

st.subheader(f"Run {run['run_id']}: {run['kind']}")
cols = st.columns(4)
cols[0].metric("Status", run["status"])
cols[1].metric("Started by", run["triggered_by"])
cols[2].metric("Dry run", "yes" if run["dry_run"] else "no")
cols[3].metric("Undone by", f"#{run['undone_by_run_id']}" if run["undone_by_run_id"] else "—")
if run["error"]:
    st.warning(run["error"])
with st.expander("Statistics and parameters", expanded=True):
    st.code(json.dumps({"stats": run["stats"], "parameters": run["parameters"]}, indent=2, ensure_ascii=False,
                       default=str), language="json")
changes = run_changes(engine, picked, limit=5000)
st.caption(f"{len(changes)} recorded change(s)" + (" (first 5,000 shown)" if len(changes) == 5000 else ""))
if changes:
    st.dataframe(changes_frame(changes, of="run"), hide_index=True, width="stretch")

may_undo = me.can("admin") or (me.can("operator") and run["triggered_by"] == me.email)
if changes and not run["undone_by_run_id"] and run["status"] != "running":
    st.divider()
    confirm = st.checkbox(f"I want to revert the {len(changes)} change(s) of run {picked}", key=f"undo_ok_{picked}",
                          disabled=not may_undo)
    conflicts = later_changes(engine, picked)
    force = False
    if conflicts:
        fields = sorted({f"{c['table_name']}#{c['row_id']}.{c['field']} (by {c['changed_by']})" for c in conflicts})
        st.warning(f"Later changes touched {len(fields)} of this run's fields: {', '.join(fields[:20])}. "
                   "Undo refuses unless an admin chooses to overwrite them.")
        force = st.checkbox("Overwrite those later changes", key=f"undo_force_{picked}", disabled=not me.can("admin"))
    if st.button("Undo run", type="primary", disabled=not (confirm and may_undo), key=f"undo_{picked}"):
        try:
            result = undo_run(engine, picked, user=me.email, role=me.role, force=force)
            st.success(f"Run {picked} undone as run {result['run_id']}: {result['fields_restored']} field(s) restored, "
                       f"{result['rows_deleted']} row(s) removed, {result['rows_restored']} row(s) put back.")
        except UndoRefused as exc:
            st.error(str(exc))
        except HubError as exc:
            st.error(str(exc))
    if not may_undo:
        st.caption("Undoing someone else's run needs the admin role.")
