"""Turn lib results into frames for st.dataframe (formatting only), every value through lib.formatting."""

from __future__ import annotations

import pandas as pd

from lib.formatting import run_summary, text, when, yes_no

STATUS_MARKS = {"succeeded": "✓", "failed": "✗", "stopped": "■", "stale": "!", "running": "…", "cancelled": "✗"}
BOOLEAN_FIELDS = {"subscriptions_locked", "dry_run", "enabled"}


def status_text(run: dict) -> str:
    """'✓ succeeded', '✗ failed (undone by 12)': a mark Debian's Chromium draws (no colour emoji font)."""
    label = f"{STATUS_MARKS.get(run['status'], '')} {run['status']}".strip()
    return label + (f" (undone by {run['undone_by_run_id']})" if run.get("undone_by_run_id") else "")


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{
        "run": r["run_id"],
        "kind": r["kind"],
        "status": status_text(r),
        "by": r["triggered_by"],
        "started": when(r["started_at"]),
        "finished": when(r["finished_at"]),
        "summary": run_summary(r["kind"], r["stats"]),
        "error": r.get("error") or "",
    } for r in runs], columns=["run", "kind", "status", "by", "started", "finished", "summary", "error"])


def field_value(field: str, value) -> str:
    """A changed field's value as a person reads it: booleans yes/no (SQLite stores 0/1), blank for empty."""
    if field in BOOLEAN_FIELDS:
        return yes_no(value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {text(v)}" for k, v in value.items() if v is not None)
    return text(value)


def changes_frame(changes: list[dict], *, of: str = "any") -> pd.DataFrame:
    """The audit entries as a table. of='run': one run's changes (no run column);
    of='row': one record's history (no table/row columns); 'any': every column."""
    columns = ["at", "table", "row", "action", "field", "old", "new", "by", "run"]
    if of == "run":
        columns.remove("run")
    if of == "row":
        columns = [c for c in columns if c not in ("table", "row")]
    rows = [{
        "at": when(c["at"]),
        "table": c.get("table_name") or "",
        "row": "" if c.get("row_id") is None else str(c["row_id"]),
        "action": c["action"],
        "field": "whole row" if c["field"] == "*" else c["field"],
        "old": field_value(c["field"], c["old_value"]),
        "new": field_value(c["field"], c["new_value"]),
        "by": c["changed_by"],
        "run": "" if c.get("run_id") is None else str(c["run_id"]),
    } for c in changes]
    return pd.DataFrame([{k: r[k] for k in columns} for r in rows], columns=columns)
