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
    save_module_settings,
)
from ui.session import hub_engine, page_actor

# Material icons, not emoji: Debian's Chromium has no colour emoji font and drew 🟢 as an empty box (#19).
STATUS_ICON = {"enabled": ":material/check_circle:", "disabled": ":material/radio_button_unchecked:",
               "failed": ":material/error:", "unavailable": ":material/warning:"}
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
    st.session_state["modules_open"] = args[0]  # keep that module's panel open after the rerun
    try:
        result = action(engine, *args, me)
        st.session_state["modules_flash"] = ("success", label.format(result=result))
    except HubError as exc:
        st.session_state["modules_flash"] = ("error", str(exc))
    st.rerun()


def setting_widget(name: str, key: str, entry: dict):
    """One input for a setting, of its type; disabled (showing its source) when the environment decides."""
    label = f"{key}" + (f" — {entry['description']}" if entry["description"] else "")
    help_text = f"locked: {entry['source']} is set in the environment" if entry["locked"] else (
        f"from {entry['source']}")
    common = {"key": f"modules_setting_{name}_{key}", "disabled": entry["locked"], "help": help_text}
    value, kind = entry["value"], entry["type"]
    if kind == "bool":
        return st.toggle(label, value=bool(value), **common)
    if kind in ("int", "float"):
        number = int if kind == "int" else float
        return st.number_input(label, value=number(value) if value is not None else None,
                               min_value=number(entry["min"]) if entry["min"] is not None else None,
                               max_value=number(entry["max"]) if entry["max"] is not None else None,
                               step=1 if kind == "int" else None, **common)
    if kind == "choice":
        return st.selectbox(label, entry["choices"], index=entry["choices"].index(value)
                            if value in entry["choices"] else 0, **common)
    if kind == "secret":
        return st.text_input(label, value="", type="password", placeholder="set — type to replace" if value
                             else "not set", **common)
    return st.text_input(label, value="" if value is None else str(value), **common)


def settings_form(r: dict) -> None:
    """The module's settings: editable ones in a form (validated and saved by lib.modules), the rest listed."""
    name = r["name"]
    editable = {k: v for k, v in r["config"].items() if v["editable"]}
    other = {k: v for k, v in r["config"].items() if not v["editable"]}
    if editable:
        with st.form(f"modules_settings_{name}"):
            st.markdown("**Settings** — saved in the database, in effect on the next rerun; each save can be "
                        "undone on the Runs page")
            values = {key: setting_widget(name, key, entry) for key, entry in editable.items()}
            for key, entry in editable.items():
                if entry["locked"]:
                    st.caption(f":material/lock: {key} is locked by `{entry['source']}`")
            if st.form_submit_button("Save settings", key=f"modules_settings_save_{name}"):
                changed = {k: v for k, v in values.items() if not editable[k]["locked"]
                           and not (editable[k]["type"] == "secret" and not v)
                           and (editable[k]["type"] == "secret" or v != editable[k]["value"])}
                try:
                    result = save_module_settings(engine, name, changed, me)
                    st.session_state["modules_flash"] = (
                        ("success", f"Saved {', '.join(result['changed'])} of {name} (run {result['run_id']}).")
                        if result["changed"] else ("info", "Nothing changed."))
                except HubError as exc:
                    st.session_state["modules_flash"] = ("error", str(exc))
                st.session_state["modules_open"] = name
                for key in editable:  # redraw from what is saved now; a typed secret never stays in the form
                    st.session_state.pop(f"modules_setting_{name}_{key}", None)
                st.rerun()
    if other:
        st.markdown("**Other config in effect** (secrets masked)")
        st.dataframe([{"key": k, "value": str(v["value"]), "from": v["source"]} for k, v in other.items()],
                     hide_index=True)


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
    with st.expander(f"{r['title']} · `{name}` {r['version'] or ''} · {r['status']}", icon=STATUS_ICON[r["status"]],
                     expanded=confirm_key in st.session_state or st.session_state.get("modules_open") == name):
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
            settings_form(r)
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
