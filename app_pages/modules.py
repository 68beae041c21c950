"""Modules: every discovered module, its status and health; enable, disable, remove data."""

import streamlit as st

from lib.config import get_settings
from lib.errors import HubError
from lib.modules import (
    dependency_graph_dot,
    disable_module,
    enable_module,
    module_report,
    modules_dir,
    removal_plan,
    remove_module_data,
)
from ui.session import hub_engine, page_actor

STATUS_ICON = {"enabled": "🟢", "disabled": "⚪", "failed": "🔴", "unavailable": "🟠"}
HEALTH_TEXT = {True: "healthy", False: "unhealthy", None: "not checked"}

me = page_actor("admin")
engine = hub_engine()
st.title("Modules")
if not get_settings().modules_enabled:
    st.info("The module system is switched off (`MODULES_ENABLED=false`). No module pages are shown.")
    st.stop()

flash = st.empty()  # always present, so the panels below keep their place (and open state) across reruns
if "modules_flash" in st.session_state:
    kind, message = st.session_state.pop("modules_flash")
    getattr(flash, kind)(message)


def act(label: str, action, *args) -> None:
    """Run a state change, remember its outcome for the next run, and redraw."""
    try:
        result = action(engine, *args, me)
        st.session_state["modules_flash"] = ("success", label.format(result=result))
    except HubError as exc:
        st.session_state["modules_flash"] = ("error", str(exc))
    st.rerun()


rows = module_report(engine, with_health=True)
st.caption(f"{len(rows)} module(s) in `{modules_dir()}`. Enabling applies a module's migrations first; "
           "disabling keeps its data.")
if not rows:
    st.info("No modules yet. Create one with `python manage.py create-module NAME \"DESCRIPTION\"`.")
    st.stop()

st.dataframe(
    [{"module": r["name"], "version": r["version"], "status": r["status"],
      "health": HEALTH_TEXT[r["health"]["healthy"]], "depends on": ", ".join(r["dependencies"]),
      "needed by": ", ".join(r["dependants"]), "pending migrations": len(r["pending_migrations"]),
      "page views": r["page_views"]} for r in rows],
    hide_index=True, width="stretch",
)
with st.expander("Dependency graph", expanded=False):
    st.graphviz_chart(dependency_graph_dot(rows))

by_name = {r["name"]: r for r in rows}
for r in rows:
    name = r["name"]
    confirm_key = f"modules_remove_{name}"
    with st.expander(f"{STATUS_ICON[r['status']]} {r['title']} · `{name}` {r['version'] or ''} · {r['status']}",
                     expanded=confirm_key in st.session_state):
        if r["description"]:
            st.markdown(r["description"])
        if r["error"]:
            st.error(r["error"])
        for warning in r["warnings"]:
            st.warning(warning)
        health = r["health"]
        st.markdown(f"**Health:** {HEALTH_TEXT[health['healthy']]} — {health['message']}")
        st.markdown(f"**Depends on:** {', '.join(r['dependencies']) or 'nothing'} · "
                    f"**Needed by:** {', '.join(r['dependants']) or 'nothing'}")
        st.markdown(f"**Installed version:** {r['installed_version'] or '—'} · "
                    f"**Changed:** {r['changed_at'] or '—'} by {r['changed_by'] or '—'}")
        if r["pending_migrations"]:
            st.warning(f"Pending migrations: {', '.join(r['pending_migrations'])}")
        if r["config"]:
            st.markdown("**Config in effect** (secrets masked)")
            st.dataframe([{"key": k, "value": str(v["value"]), "from": v["source"]} for k, v in r["config"].items()],
                         hide_index=True)
        if r["pages"]:
            st.markdown("**Pages:** " + ", ".join(f"{p['title']} ({p['views']} views)" for p in r["pages"]))
        for page, error in r["page_errors"].items():
            st.error(f"Last view of {page} failed: {error}")

        if r["enabled"]:
            down = [d for d in r["dependants"] if by_name.get(d, {}).get("enabled")]
            if down:
                st.warning(f"Disabling {name} also takes down: {', '.join(down)}.")
            if st.button("Disable", key=f"modules_disable_{name}"):
                act(f"Disabled {name}." + (f" Now unavailable too: {', '.join(down)}." if down else ""),
                    disable_module, name)
            if r["pending_migrations"] and st.button("Apply pending migrations", key=f"modules_migrate_{name}"):
                act(f"Applied migrations of {name}.", enable_module, name)
        elif r["status"] != "unavailable" or r["version"]:
            if r["status"] != "unavailable" and st.button("Enable", key=f"modules_enable_{name}", type="primary"):
                act(f"Enabled {name}.", enable_module, name)
            if st.button("Remove data…", key=f"modules_remove_start_{name}"):
                try:
                    st.session_state[confirm_key] = removal_plan(engine, name, me)
                except HubError as exc:
                    st.error(str(exc))
            plan = st.session_state.get(confirm_key)
            if plan is not None:
                if plan.empty:
                    st.info(f"{name} has no tables, views or migration history to remove.")
                else:
                    st.warning(
                        "This drops, for good:\n\n"
                        + "".join(f"- table `{t}`\n" for t in plan.tables)
                        + "".join(f"- view `{v}`\n" for v in plan.views)
                        + f"- {plan.migration_rows} row(s) of `module_migrations` for {name}"
                    )
                    sure = st.checkbox(f"Yes, drop {name}'s data", key=f"modules_remove_sure_{name}")
                    if st.button("Drop now", key=f"modules_remove_go_{name}", type="primary", disabled=not sure):
                        st.session_state.pop(confirm_key, None)
                        act(f"Removed the data of {name}.", remove_module_data, name, plan)
