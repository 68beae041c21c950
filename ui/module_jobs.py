"""The job panel under a module's page: preview and apply each job the module declares, through the runner."""

from __future__ import annotations

import streamlit as st

from lib.errors import HubError
from lib.jobs import runner
from lib.module_manifest import Manifest
from ui.session import actor, hub_engine


def job_panel(manifest: Manifest) -> None:
    """One expander per job of `manifest`: Preview, Apply, the counts and the error rows of the last result."""
    me = actor()
    for spec in manifest.jobs:
        kind = f"{manifest.name}.{spec.name}"
        state = f"job-result-{kind}"
        with st.expander(f"Job: {spec.title}", icon=":material/play_circle:"):
            st.caption(f"`python manage.py job run {kind} [--apply]` does the same from the command line.")
            preview, apply = st.columns(2)
            try:
                if preview.button("Preview", key=f"job-preview-{kind}"):
                    st.session_state[state] = runner.preview(kind, {}, me, engine=hub_engine())[1]
                if apply.button("Apply", key=f"job-apply-{kind}", type="primary", disabled=not me.can("operator")):
                    st.session_state[state] = runner.apply(kind, {}, (), me, engine=hub_engine())[1]
            except HubError as exc:
                st.error(str(exc))
            result = st.session_state.get(state)
            if result:
                head = "Preview (nothing written)" if result["dry_run"] else f"Applied as run {result['run_id']}"
                counts = {k: v for k, v in result.items() if k not in ("run_id", "dry_run", "errors")}
                st.write(f"**{head}** — " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
                if result["errors"]:
                    st.dataframe(result["errors"], hide_index=True)
