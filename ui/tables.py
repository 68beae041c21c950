"""Turn lib results into frames for st.dataframe (formatting only)."""

from __future__ import annotations

import json

import pandas as pd


def runs_frame(runs: list[dict]) -> pd.DataFrame:
    rows = []
    for r in runs:
        rows.append({
            "run": r["run_id"],
            "kind": r["kind"],
            "status": r["status"] + (" (undone)" if r.get("undone_by_run_id") else ""),
            "by": r["triggered_by"],
            "started (UTC)": r["started_at"],
            "finished (UTC)": r["finished_at"],
            "stats": json.dumps(r["stats"], ensure_ascii=False) if r["stats"] else "",
            "error": r.get("error") or "",
        })
    return pd.DataFrame(rows)


def changes_frame(changes: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([
        {
            "at (UTC)": c["at"],
            "table": c.get("table_name", ""),
            "row": c.get("row_id", ""),
            "action": c["action"],
            "field": c["field"],
            "old": "" if c["old_value"] is None else str(c["old_value"]),
            "new": "" if c["new_value"] is None else str(c["new_value"]),
            "by": c["changed_by"],
            "run": c.get("run_id"),
        }
        for c in changes
    ])
