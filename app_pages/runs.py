"""Runs: the history of every job and edit, its statistics and changes, and undo."""

import pandas as pd
import streamlit as st

from lib.errors import HubError
from lib.formatting import TIME_NOTE, number, run_summary, text
from lib.runs import (
    get_run,
    list_runs,
    run_change_count,
    run_changes,
    run_kinds,
    run_users,
    undo_conflicts,
    undo_run,
)
from ui.job_progress import running_panel
from ui.session import hub_engine, page_actor, still_signed_in
from ui.tables import changes_frame, runs_frame, status_text

SHOWN_RUNS, CHANGES_PAGE = 100, 200
EVERYONE, EVERY_KIND = "everyone", "every kind"

me = page_actor()
engine = hub_engine()
st.title("Runs")
running_panel(engine, me)  # live progress and Cancel of every running job, from any tab or replica

left, right = st.columns(2)
person = left.selectbox("Started by", [EVERYONE, *run_users(engine)], key="runs_person")
kind = right.selectbox("Kind", [EVERY_KIND, *run_kinds(engine)], key="runs_kind")
runs = list_runs(engine, limit=SHOWN_RUNS, kind=None if kind == EVERY_KIND else kind,
                 user=None if person == EVERYONE else person)
if not runs:
    st.info("No runs match.")
    st.stop()
st.dataframe(runs_frame(runs), hide_index=True, width="stretch")
st.caption(f"The newest {number(len(runs))} runs. {TIME_NOTE}")

labels = {r["run_id"]: f"#{r['run_id']} {r['kind']} · {r['status']} · {r['triggered_by']}" for r in runs}
default = st.query_params.get("run")
options = list(labels)
index = options.index(int(default)) if default and default.isdigit() and int(default) in labels else 0
picked = st.selectbox("Run", options, index=index, format_func=labels.get, key="runs_pick")
run = get_run(engine, picked)


def undo(run_id: int) -> None:
    """On click, before the page is drawn again: the page then shows the state after the undo."""
    try:
        result = undo_run(engine, run_id, user=me.email, role=me.role,
                          force=bool(st.session_state.get(f"undo_force_{run_id}")))
        st.session_state["runs_notice"] = (
            "success", f"Run {run_id} undone as run {result['run_id']}: {result['fields_restored']} field(s) restored, "
                       f"{result['rows_deleted']} row(s) removed, {result['rows_restored']} row(s) put back.")
    except HubError as exc:
        st.session_state["runs_notice"] = ("error", str(exc))
    st.query_params["run"] = str(run_id)  # stay on this run although the list gained the undo run


notice = st.session_state.pop("runs_notice", None)
if notice:
    (st.success if notice[0] == "success" else st.error)(notice[1])

st.subheader(f"Run {run['run_id']}: {run['kind']}")
cols = st.columns(4)
cols[0].metric("Status", status_text(run))
cols[1].metric("Started by", run["triggered_by"])
cols[2].metric("Dry run", "yes" if run["dry_run"] else "no")
cols[3].metric("Undone by", f"#{run['undone_by_run_id']}" if run["undone_by_run_id"] else "—")
if run["undoes_run_id"]:
    st.caption(f"This run undid run #{run['undoes_run_id']}; undoing it puts that run's changes back (redo).")
if run["error"]:
    st.warning(run["error"])
if summary := run_summary(run["kind"], run["stats"]):
    st.markdown(f"**{summary}**")
with st.expander("Statistics and parameters", expanded=False):
    st.dataframe(pd.DataFrame(
        [{"of": "statistics", "name": k.replace("_", " "), "value": text(v)} for k, v in run["stats"].items()]
        + [{"of": "parameters", "name": k.replace("_", " "), "value": text(v)} for k, v in run["parameters"].items()],
        columns=["of", "name", "value"]), hide_index=True, width="stretch")
total_changes = run_change_count(engine, picked)


@st.fragment
def change_rows() -> None:
    """The run's changes a page at a time: turning pages reruns only this part."""
    still_signed_in()
    pages = max(1, -(-total_changes // CHANGES_PAGE))
    page = st.number_input(f"Changes, page (of {number(pages)})", min_value=1, max_value=pages, value=1, step=1,
                           key=f"runs_changes_page_{picked}") if pages > 1 else 1
    changes = run_changes(engine, picked, limit=CHANGES_PAGE, offset=(int(page) - 1) * CHANGES_PAGE)
    first = (int(page) - 1) * CHANGES_PAGE + 1
    st.caption(f"{number(total_changes)} recorded change(s)"
               + (f"; {number(first)}–{number(first + len(changes) - 1)} shown" if pages > 1 else ""))
    if changes:
        st.dataframe(changes_frame(changes, of="run"), hide_index=True, width="stretch")


change_rows()
may_undo = me.can("admin") or (me.can("operator") and run["triggered_by"] == me.email)
if total_changes and not run["dry_run"]:
    st.divider()
    undone = run["undone_by_run_id"]
    if undone:
        st.info(f"Undone by run #{undone}. Undo run #{undone} to put these changes back.")
    elif run["status"] == "running":
        st.info("This run is still running; it can be undone when it has finished.")
    confirm = st.checkbox(f"I want to revert the {number(total_changes)} change(s) of run {picked}",
                          key=f"undo_ok_{picked}", disabled=not may_undo or bool(undone) or run["status"] == "running")
    # Looked up once a person means to undo: it reads every field the run touched.
    conflicts = undo_conflicts(engine, picked) if confirm and not undone else []
    if conflicts:
        fields = sorted({f"{c['table_name']}#{c['row_id']}.{c['field']}"
                         + (f" (by {c['changed_by']})" if c["changed_by"] else "") for c in conflicts})
        st.warning(f"{len(fields)} of this run's fields no longer hold the value it wrote: {', '.join(fields[:20])}. "
                   "Undo refuses unless an admin chooses to overwrite them.")
        st.checkbox("Overwrite those later changes", key=f"undo_force_{picked}", disabled=not me.can("admin"))
    st.button("Undo run", type="primary", key=f"undo_{picked}", on_click=undo, args=(picked,),
              disabled=not (confirm and may_undo) or bool(undone) or run["status"] == "running")
    if not may_undo:
        st.caption("Undoing someone else's run needs the admin role.")
