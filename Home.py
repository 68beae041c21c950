"""BMC Hub: the router. Builds the navigation for the signed-in user and runs the chosen page."""

import streamlit as st

from lib.errors import HubError
from lib.logging_setup import configure_logging
from ui.navigation import build_navigation
from ui.session import (
    auth_configured,
    auth_providers,
    current_actor,
    hub_engine,
    require_login_problem,
    session_gate,
    sign_out_button,
)

st.set_page_config(page_title="BMC Hub", page_icon=":material/hub:", layout="wide")
try:
    configure_logging()
except HubError as exc:
    st.error(str(exc))
    st.stop()

problem = require_login_problem()
if problem:
    st.error(problem)
    st.stop()

if auth_configured() and not st.user.get("is_logged_in"):
    from lib.signin_check import missing_signin_module

    st.session_state.pop("_hub_actor", None)
    st.title("BMC Hub")
    missing = missing_signin_module()
    if missing:
        st.error(missing)
        st.stop()
    st.write("Sign in with your company account to continue.")
    providers = auth_providers()
    for provider in providers or [None]:
        label = f"Sign in with {provider.capitalize()}" if provider else "Sign in"
        if st.button(label, type="primary", key=f"login_{provider or 'default'}"):
            st.login(provider) if provider else st.login()
    st.stop()

engine = hub_engine()  # applies pending core migrations before any page draws
try:
    actor = current_actor()
except HubError as exc:  # e.g. DEFAULT_ROLE is not a role
    st.error(str(exc))
    st.stop()
st.session_state["_hub_actor"] = None
if actor.mode == "oidc":
    session_gate(engine, actor, router=True)  # stops the run for a signed-out, revoked, too old or refused identity
st.session_state["_hub_actor"] = actor
with st.sidebar:
    if actor.mode == "local":
        st.warning("Sign-in is not configured: you are the local admin.", icon=":material/lock_open:")
    else:
        st.caption(f"Signed in as {actor.email} ({actor.role})")
        sign_out_button(engine, actor)

navigation = build_navigation(actor)
navigation.run()
