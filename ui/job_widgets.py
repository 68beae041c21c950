"""Widgets every job page uses: a progress bar fed by the job, the counts, the errors."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from lib.formatting import number


def progress_reporter(label: str) -> Callable[[int, int, str], None]:
    """A callback for lib jobs (done, total, message) that drives one st.progress bar."""
    bar = st.progress(0.0, text=label)

    def report(done: int, total: int, message: str = "") -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"{label}: {number(done)}/{number(total)} {message}".strip())

    return report


def show_counts(payload: dict, keys: tuple[str, ...]) -> None:
    cols = st.columns(len(keys))
    for col, key in zip(cols, keys, strict=True):
        col.metric(key.replace("_", " ").capitalize(), number(payload.get(key, 0)))
    if payload.get("stopped"):
        st.error(f"Stopped early: {payload['stopped']}. What was decided before is kept; run it again later to "
                 "continue with the rest.")
    if payload.get("run_id"):
        run_link(payload["run_id"])


def run_link(run_id: int) -> None:
    """A link to the run on the Runs page (plain text when the page is opened outside the app's navigation)."""
    try:
        st.page_link("app_pages/runs.py", label=f"Open run {run_id}", icon=":material/history:",
                     query_params={"run": str(run_id)})
    except Exception:  # noqa: BLE001 - e.g. a page tested on its own has no navigation to link into
        st.caption(f"Recorded as run {run_id} (see Runs).")


def show_errors(payload: dict) -> None:
    if payload.get("errors"):
        with st.expander(f"{len(payload['errors'])} problem(s)", expanded=len(payload["errors"]) <= 10):
            st.dataframe(pd.DataFrame(payload["errors"]), hide_index=True, width="stretch")
