"""The database and the acting user for a Streamlit script run."""

from __future__ import annotations

import logging
import time

import streamlit as st
from sqlalchemy.engine import Engine

from lib.config import get_settings
from lib.db import open_database
from lib.errors import HubError
from lib.roles import NO_ROLE, Actor, actor_for_identity
from lib.sessions import issued_at, record_seen, session_problem, sign_out

SEEN_EVERY_SECONDS = 60  # last-seen is refreshed at most this often per browser session
log = logging.getLogger("hub.signin")

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


def identity_claims() -> dict:
    """The signed-in identity's ID token claims (email, email_verified, iat, …) plus Streamlit's provider."""
    user = st.user
    try:
        return dict(user.to_dict())
    except AttributeError:  # older proxies: read the keys one by one
        return {key: user.get(key) for key in user}


def current_actor() -> Actor:
    """Signed-in user with a role from configuration (verified e-mails only); without auth a local admin."""
    if st.user.get("is_logged_in"):
        return actor_for_identity(identity_claims())
    return Actor(LOCAL_ADMIN, "admin", "local")


def actor() -> Actor:
    """The actor resolved by Home.py for this run (pages opened alone in tests fall back to resolving it)."""
    found = st.session_state.get("_hub_actor")
    return found if isinstance(found, Actor) else current_actor()


def can(needed: str) -> bool:
    """Whether this run's actor has the `needed` role: pages draw write controls only when it is true."""
    return actor().can(needed)


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
    if me.mode == "oidc":
        session_gate(hub_engine(), me)  # also when a page runs alone: signed out, revoked, too old, no role
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


def _log_once(message: str, actor: Actor, reason: str) -> None:
    """One log line per browser session and reason, not one per rerun."""
    key = f"_hub_logged_{message}_{reason}"
    if not st.session_state.get(key):
        st.session_state[key] = True
        log.warning(message, extra={"person": actor.email, "role": actor.role, "reason": reason})


def _login_again(provider: str) -> None:
    if st.button("Sign in again", type="primary", key="hub_sign_in_again"):
        st.login(provider) if provider != "default" else st.login()


def _refused_page() -> None:
    """The only page while refused (never run: the gate stops first)."""


def _clear_navigation(router: bool) -> None:
    """The router's refusal replaces a page list an earlier run of this browser session left in the sidebar."""
    if router:
        st.navigation([st.Page(_refused_page, title="BMC Hub", url_path="refused", default=True)],
                      position="hidden")


def session_gate(engine: Engine, actor: Actor, *, router: bool = False) -> None:
    """Stop the run (with a page saying why) unless this identity may go on; records the sign-in."""
    claims = identity_claims()
    provider = str(claims.get("provider") or "default")
    problem = session_problem(engine, actor.email, issued_at(claims), get_settings().session_max_age_hours)
    if problem:
        _log_once("session refused", actor, problem)
        _clear_navigation(router)
        st.title("BMC Hub")
        st.warning(problem, icon=":material/logout:")
        _login_again(provider)
        st.stop()
    if time.time() - st.session_state.get("_hub_seen_at", 0) > SEEN_EVERY_SECONDS:
        record_seen(engine, actor.email, actor.role, provider)
        st.session_state["_hub_seen_at"] = time.time()
    if actor.role == NO_ROLE:
        _log_once("sign-in refused", actor, "no role list names this person and DEFAULT_ROLE is none")
        _clear_navigation(router)
        st.title("BMC Hub")
        st.error(f"Your account ({actor.email}) is not allowed here. Ask an admin to add it to the Hub's role "
                 "lists.", icon=":material/block:")
        sign_out_button(engine, actor)
        st.stop()


def still_signed_in() -> None:
    """First line of a fragment, which reruns without Home.py's checks: a signed-out, revoked or too old
    identity reruns the whole app, which then says why and draws nothing else."""
    me = actor()
    if me.mode != "oidc":
        return
    claims = identity_claims()
    if not claims.get("is_logged_in") or session_problem(hub_engine(), me.email, issued_at(claims),
                                                          get_settings().session_max_age_hours):
        st.rerun(scope="app")


def sign_out_button(engine: Engine, actor: Actor) -> None:
    """Signs out on the server first (every copy of this sign-in is refused from now on), then in the browser."""
    if st.button("Sign out", key="hub_sign_out"):
        try:
            sign_out(engine, actor, issued_at(identity_claims()))
        except HubError as exc:  # still sign out in the browser; the log says why the record failed
            log.error("sign-out not recorded", extra={"person": actor.email, "error": str(exc)})
        st.session_state.pop("_hub_actor", None)
        st.session_state.pop("_hub_seen_at", None)
        st.logout()
