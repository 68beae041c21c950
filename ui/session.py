"""The database and the acting user for a Streamlit script run."""

from __future__ import annotations

import streamlit as st
from sqlalchemy.engine import Engine

from lib.config import get_settings
from lib.db import open_database
from lib.errors import HubError
from lib.roles import Actor, actor_for_email

LOCAL_ADMIN = "local-admin"


def hub_engine() -> Engine:
    """The database with core migrations applied; a configuration problem stops the page with one line."""
    try:
        return open_database()
    except HubError as exc:
        st.error(f"The database is not usable: {exc}")
        st.stop()
        raise  # st.stop raises; this keeps type checkers content


def auth_configured() -> bool:
    try:
        return bool(st.secrets.get("auth"))
    except Exception:  # noqa: BLE001 - no secrets.toml at all
        return False


def auth_providers() -> list[str]:
    """Named providers in [auth.NAME] sections (e.g. microsoft, google); empty for a single default provider."""
    try:
        section = st.secrets.get("auth") or {}
        return [name for name, value in section.items() if hasattr(value, "keys")]
    except Exception:  # noqa: BLE001
        return []


def current_actor() -> Actor:
    """Signed-in user with a role from configuration; without auth a single local admin."""
    user = st.user
    if user.get("is_logged_in"):
        return actor_for_email(str(user.get("email") or ""), mode="oidc")
    return Actor(LOCAL_ADMIN, "admin", "local")


def actor() -> Actor:
    """The actor resolved by Home.py for this run (pages opened alone in tests fall back to resolving it)."""
    found = st.session_state.get("_hub_actor")
    return found if isinstance(found, Actor) else current_actor()


def page_actor(needed: str = "viewer") -> Actor:
    """Every page starts here: the same sign-in and role checks as the router, so no URL skips them."""
    problem = require_login_problem()
    if problem:
        st.error(problem)
        st.stop()
    if auth_configured() and not st.user.get("is_logged_in"):
        st.error("Sign in first.")
        st.stop()
    me = actor()
    if not me.can(needed):
        st.error(f"This page needs the {needed} role; you are signed in as {me.email} with the {me.role} role.")
        st.stop()
    return me


def require_login_problem() -> str | None:
    """Why the app must refuse to start, or None."""
    if get_settings().require_login and not auth_configured():
        return ("REQUIRE_LOGIN is true but sign-in is not configured: add an [auth] section to "
                ".streamlit/secrets.toml (see docs/SECURITY.md) or unset REQUIRE_LOGIN.")
    return None
