"""Signing in for real: a real OpenID provider (oidc-provider) on 127.0.0.1, the Hub, and Chromium through the
provider's login page. Each role's navigation, an unverified e-mail, DEFAULT_ROLE=none, and sign-out followed by
replaying the old cookie in a fresh browser, on this server and on
the next server process."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lib.customers import create_customer
from lib.sessions import list_sign_ins
from tests.browser import CHROMIUM_ARGS, wait_idle
from tests.conftest import CHROMIUM, require_chromium
from tests.oidc_provider import SignInSetup, ensure_provider_installed

ACCOUNTS = {
    "viewer": {"email": "peter@partner.dk", "email_verified": True, "name": "Peter"},
    "operator": {"email": "anna@bmc.dk", "email_verified": True, "name": "Anna"},
    "admin": {"email": "boss@bmc.dk", "email_verified": True, "name": "Boss"},
    # Someone who set the admin's address on their own account; the provider never verified it.
    "impostor": {"email": "boss@bmc.dk", "email_verified": False, "name": "Not Boss"},
    "stranger": {"email": "someone@gmail.com", "email_verified": True, "name": "Someone"},
}
HUB_ENV = {"HUB_ADMINS": "boss@bmc.dk", "HUB_OPERATORS": "@bmc.dk", "HUB_VIEWERS": "@partner.dk",
           "DEFAULT_ROLE": "none", "REQUIRE_LOGIN": "true"}
VIEWER_PAGES = {"Dashboard", "Customers", "Subscriptions", "Runs"}
JOB_PAGES = {"Import subscriptions", "CVR lookup", "e-conomic", "CRM sync"}
ADMIN_PAGES = {"Integrations", "Modules", "Sessions"}


@pytest.fixture
def hub(engine, tmp_path):
    require_chromium()
    customer = create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    with engine.begin() as conn:  # two pages of subscriptions
        conn.execute(text("INSERT INTO subscriptions (customer_id, product, quantity, unit_price, billing_interval, "
                          "status) VALUES (:c, :p, 1, 100, 'monthly', 'active')"),
                     [{"c": customer, "p": f"Backup {n}"} for n in range(101)])
    ensure_provider_installed()
    setup = SignInSetup(tmp_path, ACCOUNTS)
    try:
        setup.start(HUB_ENV)
        yield setup
    except Exception:
        print(setup.logs())
        raise
    finally:
        setup.stop()


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    pw.stop()


def new_page(browser, cookies: list | None = None):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    if cookies:
        context.add_cookies(cookies)
    return context.new_page()


def open_app(page, base: str) -> None:
    page.goto(base)
    page.get_by_test_id("stApp").wait_for()
    page.wait_for_selector('[data-testid="stMain"]')
    wait_idle(page)


def sign_in(browser, hub: SignInSetup, login: str):
    """Through the provider's own login page, as a person would."""
    page = new_page(browser)
    open_app(page, hub.base)
    login_at_provider(page, hub, login, "Sign in with Company")
    return page


def login_at_provider(page, hub: SignInSetup, login: str, button: str) -> None:
    page.get_by_role("button", name=button).click()
    page.wait_for_url(f"{hub.issuer}/interaction/**")
    page.fill('input[name="login"]', login)
    page.fill('input[name="password"]', "any password")
    page.get_by_role("button", name="Sign-in").click()
    page.wait_for_url(f"{hub.base}/**")
    page.get_by_test_id("stApp").wait_for()
    wait_idle(page)


def nav_titles(page, expect_some: bool = False) -> set[str]:
    links = page.get_by_test_id("stSidebarNavLink")
    if expect_some:
        links.first.wait_for()
        wait_idle(page)
    return {links.nth(i).inner_text().strip().splitlines()[-1].strip() for i in range(links.count())}  # after the icon


def main_text(page) -> str:
    return page.get_by_test_id("stMain").inner_text()


def test_sign_in_roles_refusals_and_sign_out_against_a_real_provider(hub, browser):
    # Not signed in: only the sign-in screen.
    page = new_page(browser)
    open_app(page, hub.base)
    page.get_by_text("Sign in with your company account").wait_for()
    assert nav_titles(page) == set()

    # Each role's navigation.
    expected = {"viewer": VIEWER_PAGES, "operator": VIEWER_PAGES | JOB_PAGES,
                "admin": VIEWER_PAGES | JOB_PAGES | ADMIN_PAGES}
    pages = {}
    for login, titles in expected.items():
        pages[login] = sign_in(browser, hub, login)
        page = pages[login]
        page.get_by_text(f"Signed in as {ACCOUNTS[login]['email']} ({login})").wait_for()
        shown = nav_titles(page, expect_some=True)
        assert shown & (VIEWER_PAGES | JOB_PAGES | ADMIN_PAGES) == titles, (login, shown)

    # An unverified e-mail gets no listed role; with DEFAULT_ROLE=none that means no entry at all.
    impostor = sign_in(browser, hub, "impostor")
    impostor.get_by_text("Your account (boss@bmc.dk (unverified)) is not allowed here").wait_for()
    assert nav_titles(impostor) == set()
    stranger = sign_in(browser, hub, "stranger")
    stranger.get_by_text("Your account (someone@gmail.com) is not allowed here. Ask an admin").wait_for()
    assert nav_titles(stranger) == set() and "Customers" not in main_text(stranger)

    # The admin's Sessions page lists everyone who signed in, with the role they got.
    admin = pages["admin"]
    admin.get_by_test_id("stSidebarNavLink").filter(has_text="Sessions").click()
    admin.get_by_role("heading", name="Sessions", exact=True).wait_for()
    wait_idle(admin)
    people = {p["person"]: p["role"] for p in list_sign_ins(hub_engine_of())}
    assert people == {"peter@partner.dk": "viewer", "anna@bmc.dk": "operator", "boss@bmc.dk": "admin",
                      "boss@bmc.dk (unverified)": "none", "someone@gmail.com": "none"}

    # The viewer pages through subscriptions (a fragment: it reruns without the router) while the admin
    # revokes the viewer's sessions on the Sessions page; the next page turn shows why, and no data.
    viewer = pages["viewer"]
    viewer.get_by_test_id("stSidebarNavLink").filter(has_text="Subscriptions").click()
    viewer.get_by_text("Page (of 2)").wait_for()
    admin.get_by_test_id("stSelectbox").filter(has_text="Person").click()
    admin.get_by_role("option", name="peter@partner.dk").click()
    wait_idle(admin)
    admin.get_by_role("button", name="Revoke this person's sessions").click()
    admin.get_by_text("Every session peter@partner.dk had before").wait_for()
    viewer.locator('input[type="number"]').fill("2")
    viewer.locator('input[type="number"]').press("Enter")
    viewer.get_by_text("An admin (boss@bmc.dk) ended your sessions").wait_for()
    wait_idle(viewer)
    assert nav_titles(viewer) == set() and viewer.get_by_test_id("stDataFrame").count() == 0

    # Sign out, then replay the old cookie in a fresh browser: refused, nothing drawn, on every replica.
    operator = pages["operator"]
    old_cookies = [c for c in operator.context.cookies() if c["name"].startswith("_streamlit_user")]
    assert old_cookies
    operator.get_by_role("button", name="Sign out").click()
    operator.wait_for_url(f"{hub.issuer}/**")  # the provider's own sign-out page (end_session_endpoint)
    open_app(operator, hub.base)
    operator.get_by_text("Sign in with your company account").wait_for()
    replay = new_page(browser, old_cookies)
    open_app(replay, hub.base)
    replay.get_by_text("You signed out at").wait_for()
    assert nav_titles(replay) == set() and "Signed in as" not in replay.inner_text("body")
    hub.replace_hub()  # another server process: it knows of the sign-out only through the database
    elsewhere = new_page(browser, old_cookies)
    open_app(elsewhere, hub.base)
    elsewhere.get_by_text("You signed out at").wait_for()
    assert nav_titles(elsewhere) == set()
    log = hub.logs()
    assert "sign-in refused" in log and "someone@gmail.com" in log and "sessions ended" in log, log
    # Signing in again from there issues a new identity, which is let in.
    login_at_provider(replay, hub, "operator", "Sign in again")
    replay.get_by_text("Signed in as anna@bmc.dk (operator)").wait_for()
    # The other people's sessions go on.
    open_app(admin, hub.base)
    admin.get_by_text("Signed in as boss@bmc.dk (admin)").wait_for()


def hub_engine_of():
    from lib.db import open_database

    return open_database()
