"""Sign-in and roles: what each role sees, what it may write, and REQUIRE_LOGIN."""

from __future__ import annotations

import pytest

from lib.customers import create_customer, get_customer, update_customer
from lib.errors import NotAllowed
from lib.roles import Actor, actor_for_email, role_for_email
from lib.runs import list_runs
from tests.apptest import app, no_exception, signed_in, texts
from tests.conftest import ROOT
from ui.navigation import CORE_PAGES

ROLE_ENV = {"HUB_ADMINS": "boss@bmc.dk", "HUB_OPERATORS": "@bmc.dk", "HUB_VIEWERS": "@partner.dk"}


def expected_titles(role: str) -> set[str]:
    allowed = Actor("x", role).can
    return {title for _, file, title, _, needed, _ in CORE_PAGES if (ROOT / file).is_file() and allowed(needed)}


@pytest.fixture
def roles_env(monkeypatch):
    for key, value in ROLE_ENV.items():
        monkeypatch.setenv(key, value)


def test_role_mapping_by_address_and_domain(roles_env):
    assert actor_for_email("boss@bmc.dk").role == "admin"
    assert actor_for_email("anna@bmc.dk").role == "operator"
    assert actor_for_email("peter@partner.dk").role == "viewer"
    assert actor_for_email("someone@gmail.com").role == "viewer"  # default
    assert role_for_email("x@evil-bmc.dk", admins="", operators="bmc.dk") == "viewer"


@pytest.mark.parametrize(("email", "role"), [("peter@partner.dk", "viewer"), ("anna@bmc.dk", "operator"),
                                             ("boss@bmc.dk", "admin")])
def test_navigation_each_role_sees(engine, roles_env, email, role):
    at = no_exception(app("Home.py", user=signed_in(email)).run())
    shown = set(at.session_state["_hub_pages"])
    assert shown == expected_titles(role) | (shown - {t for _, _, t, *_ in CORE_PAGES})  # module pages aside
    assert f"Signed in as {email} ({role})" in texts(at)
    if role == "viewer":
        assert not shown & {"Import subscriptions", "CVR lookup", "e-conomic", "CRM sync", "Integrations", "Modules"}
    if role == "operator":
        assert not shown & {"Integrations", "Modules"}


def test_viewer_gets_a_read_only_customer_view(engine, roles_env):
    """#21.4: no edit form, Save, lock toggle or create for a viewer; the writes refuse by role as well."""
    cid = create_customer(engine, {"name": "Alfa ApS", "city": "Aarhus"}, user="seed")
    at = no_exception(app("app_pages/customers.py", user=signed_in("peter@partner.dk")).run())
    assert "Read-only: your role is viewer" in texts(at)
    assert at.selectbox(key="customer_pick").value == cid
    assert not [t for t in at.text_input if str(t.key).startswith(("e_", "n_"))]
    assert not at.toggle and not [b for b in at.button if b.key in ("save_customer", "create_customer")]
    assert not at.get("form") and not at.expander
    assert any("Aarhus" in frame.value.to_string() for frame in at.dataframe)
    with pytest.raises(NotAllowed, match="may not edit customers"):
        update_customer(engine, cid, {"city": "Odense"}, user="peter@partner.dk", role="viewer")


def test_changes_record_the_signed_in_person(engine, roles_env):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    at = no_exception(app("app_pages/customers.py", user=signed_in("anna@bmc.dk")).run())
    at.toggle(key=f"lock_{cid}").set_value(True).run()
    assert get_customer(engine, cid)["subscriptions_locked"] is True
    assert list_runs(engine, user="anna@bmc.dk")[0]["stats"]["changed_fields"] == ["subscriptions_locked"]


def test_without_auth_the_app_runs_as_local_admin_and_says_so(engine):
    at = no_exception(app("Home.py").run())
    assert "you are the local admin" in texts(at)
    assert set(at.session_state["_hub_pages"]) >= expected_titles("admin")


def test_require_login_without_auth_refuses_to_start(db_url, monkeypatch):
    monkeypatch.setenv("REQUIRE_LOGIN", "true")
    at = app("Home.py").run()
    assert "REQUIRE_LOGIN is true but sign-in is not configured" in texts(at)
    assert "_hub_pages" not in at.session_state


def test_no_pages_folder_beside_home_py():
    """Streamlit 1.67 runs `pages/NAME.py` directly, without Home.py, when a URL names it and a `pages/`
    folder sits beside the main script: that would skip sign-in and role checks. Pages live in app_pages/."""
    assert not (ROOT / "pages").exists()
    assert (ROOT / "app_pages" / "customers.py").is_file()


@pytest.mark.parametrize("page", ["app_pages/customers.py", "app_pages/runs.py", "app_pages/home.py"])
def test_every_page_checks_sign_in_itself(db_url, monkeypatch, page):
    monkeypatch.setenv("REQUIRE_LOGIN", "true")
    at = app(page).run()
    assert "REQUIRE_LOGIN is true but sign-in is not configured" in texts(at)
    assert len(at.dataframe) == 0 and len(at.text_input) == 0
