"""CVR watch: alerts about Hub customers whose company changed in the CVR register; run a check, act on alerts."""

import streamlit as st

from lib.db import get_engine
from lib.errors import HubError
from lib.jobs import runner
from lib.modules import get_module_config, module_code
from ui.session import page_actor

MODULE = "cvr_watch"
FLASH = f"{MODULE}_flash"
KIND_TEXT = {"ceased": "Ceased", "bankruptcy": "Bankruptcy / liquidation", "name": "New name",
             "address": "New address", "not_found": "Not in the register"}

me = page_actor("operator")
engine = get_engine()
watch = module_code(MODULE, "watch.py")
read_only = get_module_config(MODULE, "READ_ONLY") is not False
dry_run = get_module_config(MODULE, "DRY_RUN") is not False

st.title("CVR watch")
state = watch.status(engine)
st.caption(f"{state['watched']} customer(s) with a CVR number · {state['checked']} checked · last check "
           f"{state['last_check'] or 'never'} · {state['open_alerts']} open alert(s). A run spends at most "
           f"{get_module_config(MODULE, 'LOOKUPS_PER_RUN')} cvrapi.dk lookups; cached answers are free.")
if dry_run:
    st.info("Dry-run mode: runs show what they find and store nothing; taking over a name or address shows the "
            "change without making it. An admin can switch DRY_RUN off under Modules → CVR watch → Settings.")
if read_only:
    st.info("Read-only mode: Hub customers are never changed from here. An admin can switch READ_ONLY off under "
            "Modules → CVR watch → Settings.")
if state["config_problem"]:
    st.warning(f"Runs cannot look up yet: {state['config_problem']}")

if FLASH in st.session_state:
    kind, message = st.session_state.pop(FLASH)
    getattr(st, kind)(message)


def act(action, *args) -> None:
    """Run one action, keep its outcome for the next rerun, redraw."""
    try:
        st.session_state[FLASH] = ("success", action(*args))
    except HubError as exc:
        st.session_state[FLASH] = ("error", str(exc))
    st.rerun()


def run_check() -> str:
    _plan, payload = runner.apply("cvr_watch.refresh", {}, (), me, engine=engine)
    parts = [f"checked {payload['checked']} ({payload['from_cache']} from the cache, {payload['lookups']} lookups)",
             f"{payload['alerts_found']} difference(s) found"]
    parts.append("nothing stored (DRY_RUN)" if payload["module_dry_run"] else f"{payload['new_alerts']} new alert(s)")
    if payload["left_for_next_run"]:
        parts.append(f"{payload['left_for_next_run']} left for the next run")
    text = f"Run {payload['run_id']}: " + ", ".join(parts) + "."
    if payload.get("stopped"):
        text += f" Stopped: {payload['stopped']}"
    if payload["errors"]:
        text += " Problems: " + "; ".join(e["message"] for e in payload["errors"][:5])
    return text


def take(alert_id: int) -> str:
    result = watch.take_register_value(engine, alert_id, me)
    change = ", ".join(f"{k} → {v}" for k, v in result["changes"].items())
    if result["dry_run"]:
        return f"Dry run: customer {result['customer_id']} would get {change}; nothing was written."
    if result["run_id"] is None:
        return f"Customer {result['customer_id']} already has {change}."
    return f"Customer {result['customer_id']} now has {change} (run {result['run_id']}; undo it on the Runs page)."


def acknowledge(alert_id: int) -> str:
    watch.acknowledge(engine, alert_id, me)
    return f"Alert {alert_id} acknowledged."


if st.button("Check the register now", key=f"{MODULE}_run", type="primary", disabled=bool(state["config_problem"])):
    act(run_check)

show_all = st.toggle("Show acknowledged alerts too", key=f"{MODULE}_show_all")
alerts = watch.list_alerts(engine, include_acknowledged=show_all)
st.subheader(f"Alerts ({len(alerts)})")
if not alerts:
    st.caption("No alerts." if state["checked"] else "No check has run yet.")
for a in alerts:
    with st.container(border=True):
        left, right = st.columns([3, 1])
        left.markdown(f"**{KIND_TEXT[a['kind']]}** · {a['customer_name'] or a['customer_id']} (CVR {a['cvr']})")
        if a["shown_old"] is not None:
            left.markdown(f"Hub: {a['shown_old']}  \nRegister: **{a['shown_new']}**")
        else:
            left.markdown(f"Register: **{a['shown_new']}**")
        done = []
        if a["acknowledged_at"]:
            done.append(f"acknowledged by {a['acknowledged_by']}")
        if a["applied_run_id"]:
            done.append(f"taken over in run {a['applied_run_id']}")
        if a["hub_matches"]:
            done.append("the Hub has this value now")
        if done:
            left.caption(" · ".join(done))
        if a["kind"] in watch.TAKEABLE and not a["hub_matches"]:
            label = "Take the register's name" if a["kind"] == "name" else "Take the register's address"
            if right.button(label, key=f"{MODULE}_take_{a['id']}", disabled=read_only):
                act(take, a["id"])
        if not a["acknowledged_at"] and right.button("Acknowledge", key=f"{MODULE}_ack_{a['id']}"):
            act(acknowledge, a["id"])

with st.expander("How it decides"):
    st.markdown("A run looks up the customers never checked first, then those checked longest ago, skipping any "
                "checked within RECHECK_DAYS. It stops after LOOKUPS_PER_RUN cvrapi.dk requests or when the day's "
                "quota is used up; the next run carries on with the rest. The same alert is never raised twice.")
    st.dataframe([{"setting": k, "value": str(get_module_config(MODULE, k))} for k in (
        "LOOKUPS_PER_RUN", "RECHECK_DAYS", "ALERT_CEASED", "ALERT_BANKRUPTCY", "ALERT_NAME", "ALERT_ADDRESS")],
        hide_index=True)
