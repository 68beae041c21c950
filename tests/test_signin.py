"""Sign-in trust: verified e-mails only, DEFAULT_ROLE=none, server-side sign-out, revocation, max age, doctor."""

from __future__ import annotations

import json
import logging
import time

import pytest

from lib import config, signin_check
from lib.cli import main
from lib.errors import ConfigError, NotAllowed
from lib.roles import Actor, actor_for_identity, email_is_verified, role_for_email
from lib.sessions import list_sign_ins, record_seen, revoke_sessions, session_problem, utcnow
from tests.apptest import app, no_exception, signed_in, texts
from tests.metadata_server import provider_metadata, serving

ROLE_ENV = {"HUB_ADMINS": "boss@bmc.dk", "HUB_OPERATORS": "@bmc.dk", "HUB_VIEWERS": "@partner.dk"}
ADMIN_PAGES = {"Integrations", "Modules", "Sessions"}


@pytest.fixture
def roles_env(monkeypatch):
    for key, value in ROLE_ENV.items():
        monkeypatch.setenv(key, value)


# --- verified e-mails -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("claims", "trusted", "verified"), [
    ({"email_verified": True}, "", True),
    ({"email_verified": "true"}, "", True),  # some providers send a string
    ({"email_verified": False}, "", False),
    ({"email_verified": False}, "default", False),  # an explicit false is never relaxed
    ({}, "", False),  # no claim: not verified ...
    ({}, "default", True),  # ... unless the provider is trusted to verify every address
    ({}, "google", False),  # trust is per provider
    ({"xms_edov": True}, "", True),  # Entra ID: the e-mail's domain owner verified it
])
def test_email_is_verified(claims, trusted, verified):
    assert email_is_verified(claims, "default", trusted) is verified


def test_unverified_admin_address_gets_no_listed_role(roles_env, monkeypatch):
    actor = actor_for_identity({"email": "boss@bmc.dk", "email_verified": False})
    assert actor == Actor("boss@bmc.dk (unverified)", "viewer", "oidc")
    monkeypatch.setenv("DEFAULT_ROLE", "none")
    assert actor_for_identity({"email": "boss@bmc.dk"}).role == "none"
    assert actor_for_identity({"email": "Boss@BMC.dk", "email_verified": True}) == Actor("boss@bmc.dk", "admin", "oidc")
    monkeypatch.setenv("AUTH_TRUST_EMAIL_PROVIDERS", "microsoft")
    assert actor_for_identity({"email": "boss@bmc.dk", "provider": "microsoft"}).role == "admin"
    assert actor_for_identity({"email": "boss@bmc.dk", "provider": "google"}).role == "none"


def test_default_role_must_be_a_role(monkeypatch):
    assert role_for_email("x@gmail.com", admins="", operators="", default="none") == "none"
    with pytest.raises(ConfigError, match="DEFAULT_ROLE must be one of none, viewer, operator, admin"):
        role_for_email("x@gmail.com", admins="", operators="", default="veiwer")


def test_unverified_admin_is_a_viewer_in_the_app(engine, roles_env):
    at = no_exception(app("Home.py", user=signed_in("boss@bmc.dk", verified=False)).run())
    assert "Signed in as boss@bmc.dk (unverified) (viewer)" in texts(at)
    assert not set(at.session_state["_hub_pages"]) & (ADMIN_PAGES | {"Import subscriptions"})


# --- DEFAULT_ROLE=none ------------------------------------------------------------------------------------


def test_default_role_none_refuses_with_a_page_and_a_log_line(engine, roles_env, monkeypatch, caplog):
    monkeypatch.setenv("DEFAULT_ROLE", "none")
    with caplog.at_level(logging.WARNING, logger="hub.signin"):
        at = no_exception(app("Home.py", user=signed_in("someone@gmail.com")).run())
    assert "Your account (someone@gmail.com) is not allowed here. Ask an admin" in texts(at)
    assert "_hub_pages" not in at.session_state and len(at.dataframe) == 0
    assert [b.label for b in at.button] == ["Sign out"]
    refused = [r for r in caplog.records if r.getMessage() == "sign-in refused"]
    assert len(refused) == 1 and refused[0].person == "someone@gmail.com"
    assert [(p["person"], p["role"]) for p in list_sign_ins(engine)] == [("someone@gmail.com", "none")]
    # A listed person still gets in.
    at = no_exception(app("Home.py", user=signed_in("anna@bmc.dk")).run())
    assert "Signed in as anna@bmc.dk (operator)" in texts(at) and "Customers" in at.session_state["_hub_pages"]


def test_a_bad_default_role_stops_the_app_with_one_line(engine, monkeypatch):
    monkeypatch.setenv("DEFAULT_ROLE", "everyone")
    at = no_exception(app("Home.py", user=signed_in("x@gmail.com")).run())
    assert "DEFAULT_ROLE must be one of" in texts(at) and "_hub_pages" not in at.session_state


# --- navigation per role ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("email", "role"), [("peter@partner.dk", "viewer"), ("anna@bmc.dk", "operator"),
                                             ("boss@bmc.dk", "admin")])
def test_sessions_page_is_for_admins_only(engine, roles_env, email, role):
    at = no_exception(app("Home.py", user=signed_in(email)).run())
    assert ("Sessions" in at.session_state["_hub_pages"]) is (role == "admin")
    page = no_exception(app("app_pages/sessions.py", user=signed_in(email)).run())
    if role != "admin":
        assert "This page needs the admin role" in texts(page) and len(page.dataframe) == 0


# --- server-side sign-out, revocation, maximum age ----------------------------------------------------------


def test_sign_out_refuses_the_old_identity_everywhere_and_a_new_sign_in_works(engine, roles_env):
    before = signed_in("anna@bmc.dk", issued=time.time() - 60)
    at = no_exception(app("Home.py", user=before).run())
    assert "Signed in as anna@bmc.dk (operator)" in texts(at)
    at.button(key="hub_sign_out").click().run()
    row = list_sign_ins(engine)[0]
    assert (row["person"], row["ended_how"], row["ended_by"]) == ("anna@bmc.dk", "signed-out", "anna@bmc.dk")
    # The same identity (a copied cookie) in another browser: refused, nothing drawn.
    replay = no_exception(app("Home.py", user=before).run())
    assert "You signed out at" in texts(replay) and "_hub_pages" not in replay.session_state
    assert [b.label for b in replay.button] == ["Sign in again"]
    # Signing in again issues a new identity, which is let in.
    again = no_exception(app("Home.py", user=signed_in("anna@bmc.dk", issued=time.time() + 2)).run())
    assert "Signed in as anna@bmc.dk (operator)" in texts(again)


def test_admin_revokes_a_person_on_the_page(engine, roles_env):
    peter = signed_in("peter@partner.dk", issued=time.time() - 60)
    no_exception(app("Home.py", user=peter).run())
    page = no_exception(app("app_pages/sessions.py", user=signed_in("boss@bmc.dk")).run())
    assert list(page.dataframe[0].value["person"]) == ["boss@bmc.dk", "peter@partner.dk"]  # last seen first
    page.selectbox(key="sessions_person").set_value("peter@partner.dk")
    page.button(key="sessions_revoke").click().run()
    assert "Every session peter@partner.dk had before" in texts(page)
    refused = no_exception(app("Home.py", user=peter).run())
    assert "An admin (boss@bmc.dk) ended your sessions" in texts(refused)
    assert "_hub_pages" not in refused.session_state


def test_revocation_needs_admin_and_a_known_person(engine):
    record_seen(engine, "anna@bmc.dk", "operator", "default")
    with pytest.raises(NotAllowed, match="may not revoke sessions"):
        revoke_sessions(engine, "anna@bmc.dk", Actor("x@bmc.dk", "operator"))
    with pytest.raises(ConfigError.__mro__[1], match="no sign-in recorded for 'nobody@bmc.dk'"):
        revoke_sessions(engine, "nobody@bmc.dk", Actor("boss@bmc.dk", "admin"))
    assert list_sign_ins(engine)[0]["not_before"] is None


def test_identity_older_than_the_maximum_age_is_refused(engine, roles_env, monkeypatch):
    monkeypatch.setenv("SESSION_MAX_AGE_HOURS", "2")
    old = no_exception(app("Home.py", user=signed_in("anna@bmc.dk", issued=time.time() - 3 * 3600)).run())
    assert "older than 2 hours" in texts(old) and "_hub_pages" not in old.session_state
    fresh = no_exception(app("Home.py", user=signed_in("anna@bmc.dk", issued=time.time() - 3600)).run())
    assert "_hub_pages" in fresh.session_state
    missing_iat = {"email": "anna@bmc.dk", "email_verified": True, "is_logged_in": True}
    assert "no issue time" in texts(no_exception(app("Home.py", user=missing_iat).run()))


def test_the_record_is_shared_state(engine):
    """Two 'replicas' are two engines on one database: a revocation through one refuses through the other."""
    from sqlalchemy import create_engine

    other = create_engine(engine.url)
    try:
        record_seen(engine, "anna@bmc.dk", "operator", "default")
        issued = utcnow().replace(microsecond=0)
        assert session_problem(other, "anna@bmc.dk", issued, 12) is None
        time.sleep(0.01)
        revoke_sessions(other, "anna@bmc.dk", Actor("boss@bmc.dk", "admin"))
        assert "An admin (boss@bmc.dk)" in session_problem(engine, "anna@bmc.dk", issued, 12)
    finally:
        other.dispose()


def test_sessions_command_lists_and_revokes(engine, capsys, monkeypatch):
    record_seen(engine, "anna@bmc.dk", "operator", "microsoft")
    assert main(["sessions", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["sign_ins"]
    assert [(r["person"], r["role"], r["provider"], r["not_before"]) for r in rows] == [
        ("anna@bmc.dk", "operator", "microsoft", None)]
    assert main(["sessions", "--revoke", "anna@bmc.dk"]) == 0
    assert "sessions of anna@bmc.dk issued before" in capsys.readouterr().out
    assert list_sign_ins(engine)[0]["ended_by"] == "cli"
    monkeypatch.setenv("HUB_CLI_ROLE", "viewer")
    assert main(["sessions", "--revoke", "anna@bmc.dk"]) == 2
    assert "may not revoke sessions" in capsys.readouterr().err


# --- doctor: can sign-in actually start? ---------------------------------------------------------------------


@pytest.fixture
def secrets_toml(tmp_path, monkeypatch):
    root = tmp_path / "config-root"
    (root / ".streamlit").mkdir(parents=True)
    monkeypatch.setattr(config, "CONFIG_ROOT", root)

    def write(metadata_url: str) -> None:
        (root / ".streamlit" / "secrets.toml").write_text(
            '[auth]\nredirect_uri = "http://127.0.0.1:8501/oauth2callback"\ncookie_secret = "0123456789abcdef"\n'
            f'[auth.microsoft]\nclient_id = "hub"\nclient_secret = "s3cret"\nserver_metadata_url = "{metadata_url}"\n',
            encoding="utf-8")
        config.reload_files()

    return write


def doctor_checks(capsys) -> dict[str, dict]:
    main(["doctor", "--json"])
    return {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


def test_doctor_checks_the_provider_answers_and_the_modules_import(engine, secrets_toml, capsys, monkeypatch):
    with serving(provider_metadata("https://idp.example.dk")) as url:
        secrets_toml(url)
        checks = doctor_checks(capsys)
    assert checks["signin"]["status"] == "ok"
    assert checks["signin:microsoft"] == {"name": "signin:microsoft", "status": "ok",
                                          "message": "provider metadata answers (issuer https://idp.example.dk)"}
    assert checks["default_role"]["status"] == "warn" and "DEFAULT_ROLE=none" in checks["default_role"]["message"]
    with serving(b"<html>not here</html>", status=404) as url:
        secrets_toml(url)
        assert "answered HTTP 404" in doctor_checks(capsys)["signin:microsoft"]["message"]
    with serving(b"<html>a login page</html>") as url:
        secrets_toml(url)
        assert "did not answer with JSON" in doctor_checks(capsys)["signin:microsoft"]["message"]
    secrets_toml("http://127.0.0.1:1/.well-known/openid-configuration")
    checks = doctor_checks(capsys)
    assert checks["signin:microsoft"]["status"] == "fail" and "does not answer" in checks["signin:microsoft"]["message"]
    monkeypatch.setattr(signin_check, "SIGNIN_MODULES", ("authlib.integrations.starlette_client", "httpx_missing"))
    monkeypatch.setenv("DEFAULT_ROLE", "none")
    checks = doctor_checks(capsys)
    assert checks["signin"]["status"] == "fail" and "httpx_missing does not import" in checks["signin"]["message"]
    assert checks["default_role"]["status"] == "ok"


# --- the sign-in screen -------------------------------------------------------------------------------------

AUTH_SECRETS = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "0123456789abcdef",
                "microsoft": {"client_id": "hub", "client_secret": "s", "server_metadata_url": "http://x/"}}


def test_sign_in_screen_offers_each_provider_and_nothing_else(engine):
    at = app("Home.py")
    at.secrets["auth"] = AUTH_SECRETS
    no_exception(at.run())
    assert [b.label for b in at.button] == ["Sign in with Microsoft"]
    assert "_hub_pages" not in at.session_state and len(at.dataframe) == 0


def test_sign_in_screen_says_what_is_missing_instead_of_a_server_error(engine, monkeypatch):
    monkeypatch.setattr(signin_check, "SIGNIN_MODULES", ("authlib.integrations.starlette_client", "httpx_missing"))
    at = app("Home.py")
    at.secrets["auth"] = AUTH_SECRETS
    no_exception(at.run())
    assert "httpx_missing does not import" in texts(at) and "streamlit[auth]" in texts(at)
    assert len(at.button) == 0


def test_a_page_and_its_fragment_stop_once_the_session_is_revoked(engine, roles_env):
    from sqlalchemy import text

    from lib.customers import create_customer

    cid = create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO subscriptions (customer_id, product, quantity, unit_price, billing_interval, "
                          "status) VALUES (:c, 'Backup', 1, 100, 'monthly', 'active')"), {"c": cid})
    peter = signed_in("peter@partner.dk", issued=time.time() - 60)
    at = no_exception(app("app_pages/subscriptions.py", user=peter).run())
    assert len(at.dataframe) >= 2 and at.number_input
    revoke_sessions(engine, "peter@partner.dk", Actor("boss@bmc.dk", "admin"))
    at.number_input[0].set_value(2).run()  # paging reruns only the fragment in a browser
    assert "An admin (boss@bmc.dk) ended your sessions" in texts(no_exception(at))
    assert len(at.dataframe) == 0 and len(at.number_input) == 0
