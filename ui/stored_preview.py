"""What a job page shows of a person's newest preview: still running, stored and usable, or no longer usable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine

from lib.job_plans import get_plan, plan_for_run, why_unusable
from lib.roles import Actor
from ui.job_progress import KEPT, show_outcome, watch_run


@dataclass(frozen=True)
class StoredPreview:
    stored: dict | None = None  # the stored plan's row, when it can still be applied
    plan: Any = None  # that plan as the page uses it (decoded once per stored plan and session)
    fresh: bool = False  # decoded on this rerun: a new preview, so the page forgets earlier approvals
    show_last: bool = False  # the apply is newer than any preview: the page shows the apply's outcome


def stored_preview(engine: Engine, me: Actor, preview: dict | None, last: dict | None, *, reading: str,
                   decode: Callable[[dict], Any], state_key: str, fingerprint: str | None = None,
                   what: str = "preview", heading: Callable[[str], Any] = st.subheader,
                   kept: str = KEPT) -> StoredPreview:
    """Watch `preview` while its worker runs; once it ended, give its stored plan if it can still be applied
    (`why_unusable` against `fingerprint`), or say why not. `last` is the newest apply: when it is newer than
    the preview, nothing is shown here and `show_last` tells the page to show the apply instead."""
    if preview and preview["status"] == "running":
        heading(reading)
        watch_run(engine, preview["run_id"], me, kept=kept)
        return StoredPreview()
    if preview is None or (last is not None and last["run_id"] > preview["run_id"]):
        return StoredPreview(show_last=last is not None)
    stored = plan_for_run(engine, preview["run_id"])
    if stored is None:  # it failed, stopped or was cancelled before storing a plan
        show_outcome(preview)
        return StoredPreview()
    why = why_unusable(stored, fingerprint)
    if why:
        st.info(f"The last {what} can no longer be applied: {why}. Preview again.")
        return StoredPreview()
    cache = st.session_state.get(state_key)
    fresh = cache is None or cache[0] != stored["id"]
    if fresh:
        cache = (stored["id"], decode(get_plan(engine, stored["id"])["plan"]))
        st.session_state[state_key] = cache
    return StoredPreview(stored=stored, plan=cache[1], fresh=fresh)
