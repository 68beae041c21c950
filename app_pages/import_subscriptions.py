"""Import subscriptions: upload a BMC Office export, check the column mapping, preview every row, apply as one run."""

import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from lib.errors import HubError, InputError
from lib.import_report import error_report_csv, error_report_xlsx
from lib.subscription_import import OUTCOMES, PlanOutdated, apply_plan, plan_import
from lib.subscription_rows import COLUMN_ALIASES, FIELD_LABELS, header_candidates, read_export
from ui.session import hub_engine, page_actor

OUTCOME_LABELS = {"create": "Create", "update": "Update", "unchanged": "Unchanged", "skipped_locked": "Skipped (locked)",
                  "unmatched": "Unmatched", "rejected": "Rejected"}
SHOWN_ROWS = 5000
NOT_READ = -1

me = page_actor("operator")
engine = hub_engine()
st.title("Import subscriptions")
st.caption("Upload the BMC Office subscription export (.xlsx or .xlsm). The preview shows what each row would do; "
           "nothing is written until you press Apply.")

upload = st.file_uploader("BMC Office export", type=["xlsx", "xlsm"], key="import_file")
if upload is None:
    st.session_state.pop("import_cache", None)
    st.stop()

file_key = (upload.file_id, upload.name, upload.size)
if st.session_state.get("import_file_key") != file_key:  # a new file: forget the old sheet, mapping and result
    for key in [k for k in st.session_state if k.startswith(("import_map_", "import_sheet", "import_result"))]:
        del st.session_state[key]
    st.session_state.pop("import_cache", None)
    st.session_state["import_file_key"] = file_key
data = upload.getvalue()


def _columns_from_widgets() -> dict[str, int | None] | None:
    chosen = {f: st.session_state[f"import_map_{f}"] for f in COLUMN_ALIASES if f"import_map_{f}" in st.session_state}
    return {f: (None if v == NOT_READ else v) for f, v in chosen.items()} or None


def _mapping_editor(headers: list[str], mapping: dict[str, int], expanded: bool) -> None:
    options = [NOT_READ, *range(len(headers))]
    with st.expander("Correct the column mapping", expanded=expanded):
        st.caption("Pick the column that holds each field when a header was not recognised.")
        cols = st.columns(3)
        for n, field in enumerate(COLUMN_ALIASES):
            key = f"import_map_{field}"
            if key not in st.session_state:
                st.session_state[key] = mapping.get(field, NOT_READ)
            cols[n % 3].selectbox(FIELD_LABELS[field], options, key=key,
                                  format_func=lambda i: "— not read —" if i == NOT_READ else
                                  f"{headers[i] or '(blank)'} (column {i + 1})")


def _sheet_picker(names: list[str], current: str) -> None:
    if len(names) > 1:
        if st.session_state.get("import_sheet") not in names:
            st.session_state["import_sheet"] = current
        st.selectbox("Sheet", names, key="import_sheet", on_change=_forget_mapping)


def _forget_mapping() -> None:
    for key in [k for k in st.session_state if k.startswith("import_map_")]:
        del st.session_state[key]


def _cache_fits(cached, sheet: str | None, columns: dict | None) -> bool:
    """The cached preview was read from this file with this sheet and mapping (widgets echo what was read)."""
    if cached is None or cached[0] != file_key:
        return False
    read = cached[1].export
    return (sheet is None or sheet == read.sheet) and (
        columns is None or columns == {f: read.mapping.get(f) for f in COLUMN_ALIASES})


sheet = st.session_state.get("import_sheet")
columns = _columns_from_widgets()
cache = st.session_state.get("import_cache")
if not _cache_fits(cache, sheet, columns):
    try:
        with st.spinner("Reading the workbook…"):
            export = read_export(data, file_name=upload.name, sheet=sheet, columns=columns)
            plan = plan_import(engine, export)
    except InputError as exc:
        st.error(str(exc))
        try:
            names, shown, headers, detected = header_candidates(data, file_name=upload.name, sheet=sheet)
        except InputError:
            st.stop()
        _sheet_picker(names, shown)
        if headers:
            _mapping_editor(headers, detected, expanded=True)
        st.stop()
    st.session_state["import_cache"] = cache = (file_key, plan)
plan = cache[1]
export = plan.export

notice = st.session_state.pop("import_notice", None)
if notice:
    st.warning(notice)
result = st.session_state.get("import_result")
if result:
    st.success(f"Applied as run {result['run_id']}: {result['created']} created, {result['updated']} updated, "
               f"{result['unchanged']} unchanged, {result['skipped_locked']} skipped (locked), "
               f"{result['unmatched']} unmatched, {len(result['errors']) - result['unmatched']} rejected.")
    stats = st.columns(4)
    for col, (label, key) in zip(stats, [("Rows read", "rows"), ("Created", "created"), ("Updated", "updated"),
                                         ("Left unchanged", "unchanged")], strict=True):
        col.metric(label, result[key])
    try:
        st.page_link("app_pages/runs.py", label=f"Open run {result['run_id']}", icon=":material/history:",
                     query_params={"run": str(result["run_id"])})
    except StreamlitAPIException:  # the page opened on its own (tests): no navigation to link into
        st.caption(f"See run {result['run_id']} on the Runs page.")

_sheet_picker(export.sheet_names, export.sheet)
st.caption(f"Sheet {export.sheet!r}, header on row {export.header_row}.")
mapping_frame = pd.DataFrame([{"field": FIELD_LABELS[f], "column": export.headers[c], "column no.": c + 1}
                              for f, c in sorted(export.mapping.items(), key=lambda item: item[1])])
st.dataframe(mapping_frame, hide_index=True, width="content")
if export.unrecognised_headers:
    st.warning(f"Not recognised, not read: {', '.join(repr(h) for h in export.unrecognised_headers)}. "
               "Map them below if they hold a field.")
_mapping_editor(export.headers, export.mapping, expanded=bool(export.unrecognised_headers))

counts = plan.counts()
st.subheader("Preview")
metrics = st.columns(7)
metrics[0].metric("Rows", len(plan.items))
for col, outcome in zip(metrics[1:], OUTCOMES, strict=True):
    col.metric(OUTCOME_LABELS[outcome], counts[{"create": "created", "update": "updated"}.get(outcome, outcome)])

shown = st.multiselect("Show", list(OUTCOMES), default=["create", "update", "skipped_locked"],
                       format_func=OUTCOME_LABELS.get, key="import_outcomes")
table = plan.table(set(shown), limit=SHOWN_ROWS)
if table:
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")
    if len(table) == SHOWN_ROWS:
        st.caption(f"First {SHOWN_ROWS:,} rows shown.")
else:
    st.caption("No rows with these outcomes.")

errors = plan.errors()
if errors:
    st.subheader(f"Rejected and unmatched rows ({len(errors)})")
    st.dataframe(pd.DataFrame(errors), hide_index=True, width="stretch")
    left, right = st.columns(2)
    stem = upload.name.rsplit(".", 1)[0]
    left.download_button("Download error report (xlsx)", error_report_xlsx(plan), file_name=f"{stem}-fejl.xlsx",
                         mime="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                         key="import_report_xlsx")
    right.download_button("Download error report (csv)", error_report_csv(plan), file_name=f"{stem}-fejl.csv",
                          mime="text/csv", key="import_report_csv")

to_write = counts["created"] + counts["updated"]
if to_write == 0:
    st.info("Nothing to write: every row is unchanged, skipped, unmatched or rejected.")
if st.button(f"Apply ({to_write} change(s))", type="primary", key="import_apply",
             disabled=to_write == 0):
    progress = st.progress(0.0, text="Starting…")

    def _report(done: int, total: int, message: str) -> None:
        progress.progress(done / total if total else 1.0, text=message)

    try:
        st.session_state["import_result"] = apply_plan(engine, plan, user=me.email, role=me.role, on_progress=_report)
        st.session_state.pop("import_cache", None)
        st.rerun()
    except PlanOutdated as exc:
        st.session_state.pop("import_cache", None)
        st.session_state["import_notice"] = f"{exc}. The preview below is fresh: check it and apply again."
        st.rerun()
    except HubError as exc:
        st.error(str(exc))
