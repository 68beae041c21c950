"""Import subscriptions: upload a BMC Office export; a worker previews every row, apply writes as one run.

Preview and apply run in a worker process, never in this page's script run: reloading, opening another page or
closing the tab does not stop them, and coming back shows the newest preview and apply from the database.
"""

from decimal import Decimal

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from lib.errors import HubError, InputError
from lib.formatting import money, number, outcome_label, text, when
from lib.job_plans import get_plan, plan_for_run, why_unusable
from lib.job_worker import APPLY, PREVIEW, latest_run, save_upload, start_job
from lib.jobs.import_subscriptions import ImportSubscriptionsJob
from lib.subscription_import import OUTCOMES
from lib.subscription_rows import COLUMN_ALIASES, FIELD_LABELS, header_candidates
from lib.worker_jobs import import_fingerprint
from ui.job_progress import show_outcome, watch_run
from ui.session import hub_engine, page_actor

KIND = ImportSubscriptionsJob.kind

OUTCOME_LABELS = {o: outcome_label(KIND, o) for o in OUTCOMES}  # the glossary's words
COUNT_OF = {"create": "created", "update": "updated"}
SHOWN_ROWS = 5000
NOT_READ = -1

me = page_actor("operator")
engine = hub_engine()
st.title("Import subscriptions")
st.caption("Upload the BMC Office subscription export (.xlsx or .xlsm). The preview shows what each row would do; "
           "nothing is written until you press Apply. Both run on the server: you may leave the page meanwhile.")


def _preview(params: dict) -> None:
    try:
        start_job(engine, KIND, PREVIEW, params, user=me.email, role=me.role)
    except HubError as exc:
        st.session_state["import_notice"] = str(exc)


def _redo() -> None:
    st.session_state["import_redo"] = True


def _new_sheet() -> None:
    for key in [k for k in st.session_state if k.startswith("import_map_")]:
        del st.session_state[key]
    _redo()


def _mapping_editor(headers: list[str], mapping: dict[str, int], expanded: bool) -> None:
    options = [NOT_READ, *range(len(headers))]
    with st.expander("Correct the column mapping", expanded=expanded):
        st.caption("Pick the column that holds each field when a header was not recognised.")
        cols = st.columns(3)
        for n, field in enumerate(COLUMN_ALIASES):
            key = f"import_map_{field}"
            if key not in st.session_state:
                st.session_state[key] = mapping.get(field, NOT_READ)
            cols[n % 3].selectbox(FIELD_LABELS[field], options, key=key, on_change=_redo,
                                  format_func=lambda i: "— not read —" if i == NOT_READ else
                                  f"{headers[i] or '(blank)'} (column {i + 1})")


def _sheet_picker(names: list[str], current: str) -> None:
    if len(names) > 1:
        if st.session_state.get("import_sheet") not in names:
            st.session_state["import_sheet"] = current
        st.selectbox("Sheet", names, key="import_sheet", on_change=_new_sheet)


def _shown(rows: list[dict]) -> pd.DataFrame:
    """Rows as a person reads them (lib.formatting): Danish numbers, kr., dd-mm-yyyy, blank for empty."""
    return pd.DataFrame([{k: v if k == "row" else money(Decimal(str(v))) if k == "unit price" and v not in (None, "")
                          else when(v) if k == "start date" else text(v) for k, v in r.items()} for r in rows])


def _show_result(run: dict) -> None:
    r = run["stats"]
    show_outcome(run)
    if not r:
        return
    head = "Applied" if run["status"] == "succeeded" else "Written before it ended"
    n = {key: number(r.get(key, 0)) for key in ("created", "updated", "unchanged", "skipped_locked", "unmatched",
                                                  "rejected")}
    st.success(f"{head} as run {run['run_id']}: {n['created']} created, {n['updated']} updated, "
               f"{n['unchanged']} unchanged, {n['skipped_locked']} locked, "
               f"{n['unmatched']} unmatched, {n['rejected']} rejected.")
    stats = st.columns(4)
    for col, (label, key) in zip(stats, [("Rows read", "rows"), ("Created", "created"), ("Updated", "updated"),
                                         ("Left unchanged", "unchanged")], strict=True):
        col.metric(label, number(r.get(key, 0)))
    try:
        st.page_link("app_pages/runs.py", label=f"Open run {run['run_id']}", icon=":material/history:",
                     query_params={"run": str(run["run_id"])})
    except StreamlitAPIException:  # the page opened on its own (tests): no navigation to link into
        st.caption(f"See run {run['run_id']} on the Runs page.")


# An apply runs (anyone's: one import at a time): watch it.
applying = latest_run(engine, KIND, dry_run=False)
if applying and applying["status"] == "running":
    st.subheader("Applying")
    watch_run(engine, applying["run_id"], me)
    st.stop()

upload = st.file_uploader("BMC Office export", type=["xlsx", "xlsm"], key="import_file")
if upload is not None:
    file_key = (upload.file_id, upload.name, upload.size)
    if st.session_state.get("import_file_key") != file_key:  # a new file: save it, preview it in a worker
        for key in [k for k in st.session_state if k.startswith(("import_map_", "import_sheet"))]:
            del st.session_state[key]
        st.session_state["import_file_key"] = file_key
        path = save_upload(upload.getvalue(), upload.name)
        _preview({"path": str(path), "file_name": upload.name})

notice = st.session_state.pop("import_notice", None)
if notice:
    st.warning(notice)

preview = latest_run(engine, KIND, dry_run=True, user=me.email)
applied = latest_run(engine, KIND, dry_run=False, user=me.email)
if applied and (preview is None or applied["run_id"] > preview["run_id"]):
    _show_result(applied)
if preview is None:
    st.stop()

source = {k: preview["parameters"].get(k) for k in ("path", "file_name")}
if st.session_state.pop("import_redo", False):  # the person changed the sheet or the mapping: preview again
    columns = {f: st.session_state[f"import_map_{f}"] for f in COLUMN_ALIASES if f"import_map_{f}" in st.session_state}
    _preview({**source, "sheet": st.session_state.get("import_sheet"),
              "columns": {f: (None if v == NOT_READ else v) for f, v in columns.items()} or None})
    st.rerun()

if preview["status"] == "running":
    st.subheader(f"Preview of {source['file_name']}")
    watch_run(engine, preview["run_id"], me)
    st.stop()
if st.session_state.get("import_widgets_for") != preview["run_id"]:  # widgets echo the newest preview
    for key in [k for k in st.session_state if k.startswith(("import_map_", "import_sheet"))]:
        del st.session_state[key]
    st.session_state["import_widgets_for"] = preview["run_id"]

stored = plan_for_run(engine, preview["run_id"])
if preview["status"] != "succeeded" or stored is None:
    st.error(preview["error"] or f"The preview ended {preview['status']}.")
    try:
        names, shown, headers, detected = header_candidates(source["path"], file_name=source["file_name"],
                                                            sheet=preview["parameters"].get("sheet"))
    except (InputError, OSError):
        st.stop()
    _sheet_picker(names, shown)
    if headers:
        _mapping_editor(headers, detected, expanded=True)
    st.stop()

cache = st.session_state.get("import_plan")
if cache is None or cache[0] != stored["id"]:
    cache = (stored["id"], get_plan(engine, stored["id"])["plan"])
    st.session_state["import_plan"] = cache
plan = cache[1]
export = plan["export"]

st.caption(f"{export['file_name']}: sheet {export['sheet']!r}, header on row {export['header_row']}. "
           f"Previewed {stored['created_at']:%Y-%m-%d %H:%M} UTC as run {preview['run_id']}.")
_sheet_picker(export["sheet_names"], export["sheet"])
mapping = {f: int(c) for f, c in export["mapping"].items()}
mapping_frame = pd.DataFrame([{"field": FIELD_LABELS[f], "column": export["headers"][c], "column no.": c + 1}
                              for f, c in sorted(mapping.items(), key=lambda item: item[1])])
st.dataframe(mapping_frame, hide_index=True, width="content")
if export["unrecognised_headers"]:
    st.warning(f"Not recognised, not read: {', '.join(repr(h) for h in export['unrecognised_headers'])}. "
               "Map them below if they hold a field.")
_mapping_editor(export["headers"], mapping, expanded=bool(export["unrecognised_headers"]))

counts = plan["counts"]
kept = plan.get("rows_kept")  # a preview stores the first rows of each outcome, not all (docs/IMPORT.md)
st.subheader("Preview")
metrics = st.columns(7)
metrics[0].metric("Rows", number(plan.get("rows_total", len(plan["rows"]))))
for col, outcome in zip(metrics[1:], OUTCOMES, strict=True):
    col.metric(OUTCOME_LABELS[outcome], number(counts[COUNT_OF.get(outcome, outcome)]))

shown = st.multiselect("Show", list(OUTCOMES), default=["create", "update", "skipped_locked"],
                       format_func=OUTCOME_LABELS.get, key="import_outcomes")
table = [r for r in plan["rows"] if r["outcome"] in shown][:SHOWN_ROWS]
if table:
    st.dataframe(_shown(table), hide_index=True, width="stretch")
    of_shown = sum(counts[COUNT_OF.get(o, o)] for o in shown)
    if len(table) < of_shown:
        each = f" ({number(kept)} of each outcome)" if kept else ""
        st.caption(f"Showing the first {number(len(table))}{each} of {number(of_shown)} rows; the counts above are "
                   "the whole file.")
else:
    st.caption("No rows with these outcomes.")

errors = plan["errors"]
if errors:
    total_errors = plan.get("errors_total", len(errors))
    st.subheader(f"Rejected and unmatched rows ({number(total_errors)})")
    st.dataframe(_shown(errors), hide_index=True, width="stretch")
    if len(errors) < total_errors:
        st.caption(f"Showing the first {number(len(errors))} of {number(total_errors)}; the error report has them all.")
    left, right = st.columns(2)
    stem = export["file_name"].rsplit(".", 1)[0]
    for col, fmt, mime in ((left, "xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
                           (right, "csv", "text/csv")):
        path = plan["reports"].get(fmt)
        try:
            data = open(path, "rb").read() if path else None  # noqa: SIM115 - small report file
        except OSError:
            data = None
        if data is not None:
            col.download_button(f"Download error report ({fmt})", data, file_name=f"{stem}-fejl.{fmt}", mime=mime,
                                key=f"import_report_{fmt}")

to_write = counts["created"] + counts["updated"]
problem = why_unusable(stored, import_fingerprint(engine))
if problem:
    st.warning(f"{problem.capitalize()}: preview the file again to apply it.")
elif to_write == 0:
    st.info("Nothing to write: every row is unchanged, skipped, unmatched or rejected.")
left, right = st.columns([1, 3])
if left.button(f"Apply ({number(to_write)} change(s))", type="primary", key="import_apply",
               disabled=to_write == 0 or problem is not None):
    try:
        start_job(engine, KIND, APPLY, {"plan_id": stored["id"], "file_name": export["file_name"]}, user=me.email,
                  role=me.role)
        st.rerun()
    except HubError as exc:
        st.error(str(exc))
if right.button("Preview again", key="import_again", help="Read the same file again against the data as it is now"):
    _preview({**source, "sheet": preview["parameters"].get("sheet"), "columns": preview["parameters"].get("columns")})
    st.rerun()
