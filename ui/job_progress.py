"""A job's live progress, read from the database once a second: any tab, any person, any replica sees it."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.engine import Engine

from lib.errors import HubError
from lib.formatting import number
from lib.job_worker import refresh, running_runs
from lib.roles import Actor
from lib.runs import request_cancel
from ui.job_widgets import run_link, show_counts, show_errors
from ui.session import still_signed_in

POLL_SECONDS = 1.0
KEPT = "what was written before is kept (undo reverts it)"


def _fraction(run: dict) -> float:
    done, total = run.get("progress_done") or 0, run.get("progress_total") or 0
    return min(done / total, 1.0) if total else 0.0


def _label(run: dict) -> str:
    what = "Preview" if run["dry_run"] else "Run"
    done, total = run.get("progress_done"), run.get("progress_total")
    counts = f" · {number(done)} of {number(total)}" if total else ""
    return f"{what} {run['run_id']} ({run['kind']}, by {run['triggered_by']}){counts}: {run.get('progress_message') or 'starting…'}"


def _cancel_button(engine: Engine, run: dict, me: Actor, job_role: str, kept: str = KEPT) -> None:
    if run["cancel_requested_by"]:
        st.caption(f"Cancel requested by {run['cancel_requested_by']}: it stops after the chunk it is writing; "
                   f"{kept}.")
        return
    if st.button("Cancel", key=f"job_cancel_{run['run_id']}", disabled=not me.can(job_role),
                 help="Stops at the next chunk; chunks already written are kept and can be undone."):
        try:
            request_cancel(engine, run["run_id"], user=me.email, role=me.role, needed=job_role)
        except HubError as exc:
            st.error(str(exc))


def _running(engine: Engine, run_id: int, me: Actor, job_role: str, kept: str) -> None:
    still_signed_in()
    run = refresh(engine, run_id)
    if run["status"] != "running":
        st.rerun(scope="app")  # finished: let the page show the result
    st.progress(_fraction(run), text=_label(run))
    _cancel_button(engine, run, me, job_role, kept)


def watch_run(engine: Engine, run_id: int, me: Actor, *, job_role: str = "operator", kept: str = KEPT) -> None:
    """Progress bar, message and Cancel of a running run, refreshed every second; reruns the page when it ends.

    `kept`: what a Cancel leaves behind, for a job whose writes undo cannot revert (the CRM write-back)."""
    st.fragment(run_every=POLL_SECONDS)(_running)(engine, run_id, me, job_role, kept)


def show_outcome(run: dict) -> None:
    """How a finished run ended, in one line (the page shows its own statistics below)."""
    status, error = run["status"], run.get("error")
    if status == "succeeded":
        return
    if status == "cancelled":
        st.warning(f"Run {run['run_id']} was {error or 'cancelled'}.")
    elif status == "stopped" and run["dry_run"]:  # a preview writes nothing: there is nothing to keep
        st.error(f"Preview {run['run_id']} stopped early: {error}.")
    elif status == "stopped":
        st.error(f"Run {run['run_id']} stopped early: {error}. What was written before is kept.")
    elif status == "stale":
        st.error(f"Run {run['run_id']} stopped without finishing ({error}).")
    else:
        st.error(f"Run {run['run_id']} failed: {error}")


def show_finished(run: dict, count_keys: tuple[str, ...], success: str | None = None) -> None:
    """A finished run as a job page shows it: how it ended (`success` when it succeeded), its counts, the rows it
    skipped and a link to it on the Runs page."""
    show_outcome(run)
    if success and run["status"] == "succeeded":
        st.success(success)
    show_counts(run["stats"], count_keys)
    show_errors(run["stats"])
    run_link(run["run_id"])


def _all_running(engine: Engine, me: Actor) -> None:
    still_signed_in()
    runs = [r for r in (refresh(engine, r["run_id"]) for r in running_runs(engine)) if r["status"] == "running"]
    if not runs:
        st.caption("No job is running.")
        return
    for run in runs:
        st.progress(_fraction(run), text=_label(run))
        _cancel_button(engine, run, me, "operator")


def running_panel(engine: Engine, me: Actor) -> None:
    """Every running job with its live progress and Cancel (the Runs page)."""
    st.fragment(run_every=POLL_SECONDS)(_all_running)(engine, me)
