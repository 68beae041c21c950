"""Widgets every job page uses: a progress bar fed by the job, the counts, the errors."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from lib.formatting import OUTCOME_WORDS, number, outcome_label


def progress_reporter(label: str) -> Callable[[int, int, str], None]:
    """A callback for lib jobs (done, total, message) that drives one st.progress bar."""
    bar = st.progress(0.0, text=label)

    def report(done: int, total: int, message: str = "") -> None:
        bar.progress(min(done / total, 1.0) if total else 1.0, text=f"{label}: {number(done)}/{number(total)} {message}".strip())

    return report


# Short metric labels (a long one is cut off in a row of seven); the help says it in full.
COUNT_LABELS = {"hub_customers": ("Hub customers", "Hub customers considered"),
                "economic_customers": ("e-conomic", "customers read from e-conomic"),
                "candidates": ("Candidates", "customers without a CVR number that were considered"),
                "not_found": ("Not found", None), "not_asked": ("Not asked", "not looked up: the run's limit or the quota"),
                "quota_exhausted": ("Over quota", "not looked up: cvrapi.dk's daily quota was used up"),
                "skipped_locked": ("Locked", "the customer's subscriptions are locked: skipped"),
                "accounts": ("Accounts", "CRM accounts read"),
                "updated": ("Updated", None)}


def show_counts(payload: dict, keys: tuple[str, ...]) -> None:
    cols = st.columns(len(keys))
    for col, key in zip(cols, keys, strict=True):
        label, help_text = COUNT_LABELS.get(key, (key.replace("_", " ").capitalize(), None))
        col.metric(label, number(payload.get(key, 0)), help=help_text)
    if payload.get("stopped"):
        st.error(f"Stopped early: {payload['stopped']}. What was decided before is kept; run it again later to "
                 "continue with the rest.")
    if payload.get("run_id"):
        run_link(payload["run_id"])


def show_outcome_counts(kind: str, outcomes: list[str], total: tuple[str, int] | None = None) -> None:
    """One metric per outcome, counted from the rows themselves and named with the glossary's words, so a
    metric always equals the rows the table shows under that word."""
    order = list(OUTCOME_WORDS.get(kind, {}))
    shown = [o for o in order if o in outcomes] + sorted({o for o in outcomes if o not in order})
    cols = st.columns(len(shown) + (1 if total else 0))
    if total:
        cols[0].metric(total[0], number(total[1]))
        cols = cols[1:]
    for col, outcome in zip(cols, shown, strict=True):
        col.metric(outcome_label(kind, outcome), number(outcomes.count(outcome)))


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
