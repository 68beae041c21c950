"""Playwright in headless Chromium: search, lock, and the edit sequences of #15 on the Customers page."""

from __future__ import annotations

from playwright.sync_api import expect

from lib.customers import STALE, create_customer, get_customer, update_customer
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def _edit_form(page):
    return page.locator('[data-testid="stForm"]').first


def _open(page, label: str) -> None:
    page.get_by_test_id("stSelectbox").filter(has_text="Open customer").click()
    page.get_by_role("option", name=label).click()
    wait_idle(page)


def _save(page) -> None:
    _edit_form(page).get_by_role("button", name="Save changes").click()
    wait_idle(page)


def _fill(page, label: str, value: str) -> None:
    field = _edit_form(page).get_by_label(label, exact=True)
    field.fill(value)
    field.press("Tab")


def test_search_customer_and_toggle_lock(engine, streamlit_server, browser_page):  # noqa: F811
    create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    target = create_customer(engine, {"name": "Østergaard & Søn A/S", "cvr_number": "20756438"}, user="seed")
    page = browser_page(streamlit_server(), "customers")
    page.get_by_placeholder("Name, CVR or e-conomic number").fill("Østergaard")
    page.get_by_placeholder("Name, CVR or e-conomic number").press("Enter")
    wait_idle(page)
    page.get_by_text("1 customers").wait_for()
    page.get_by_role("heading", name="Østergaard & Søn A/S").wait_for()
    wait_idle(page)
    page.get_by_text("Subscriptions locked", exact=True).first.click()
    wait_idle(page)
    page.get_by_text("Subscriptions locked.").wait_for()
    assert get_customer(engine, target)["subscriptions_locked"] is True


def test_open_a_open_b_edit_save_then_a_change_meanwhile_then_create_and_edit(
        engine, streamlit_server, browser_page):  # noqa: F811
    """The three sequences of #15 in one browser session (one server start keeps CI time down)."""
    a = create_customer(engine, {"name": "Alfa ApS", "email": "info@alfa.dk", "phone": "11111111",
                                 "address": "Alfavej 1", "zip": "8000", "city": "Aarhus"}, user="seed")
    b = create_customer(engine, {"name": "Beta A/S", "email": "post@beta.dk", "phone": "22222222"}, user="seed")
    before_a, before_b = get_customer(engine, a), get_customer(engine, b)
    page = browser_page(streamlit_server(), "customers")

    # open A (the first row) → open B → change B's phone → Save: only B's phone changes
    page.get_by_role("heading", name="Alfa ApS").wait_for()
    _open(page, "Beta A/S (no CVR)")
    page.get_by_role("heading", name="Beta A/S").wait_for()
    expect(_edit_form(page).get_by_label("Name", exact=True)).to_have_value("Beta A/S")
    expect(_edit_form(page).get_by_label("Address", exact=True)).to_have_value("")
    _fill(page, "Phone", "33333333")
    _save(page)
    page.get_by_text("Saved: phone.").wait_for()
    after_b = get_customer(engine, b)
    assert after_b["phone"] == "33333333"
    assert {k: v for k, v in after_b.items() if k not in ("phone", "updated_at")} == \
        {k: v for k, v in before_b.items() if k not in ("phone", "updated_at")}
    assert get_customer(engine, a) == before_a

    # someone else changes B while the form is open → Save is refused, nothing written; Reload, then it saves
    update_customer(engine, b, {"city": "Odense"}, user="bob@bmc.dk")
    _fill(page, "Phone", "44444444")
    _save(page)
    page.get_by_text(STALE).wait_for()
    assert get_customer(engine, b)["phone"] == "33333333"
    page.get_by_role("button", name="Reload").click()
    wait_idle(page)
    expect(_edit_form(page).get_by_label("City", exact=True)).to_have_value("Odense")
    _fill(page, "Phone", "44444444")
    _save(page)
    page.get_by_text("Saved: phone.").wait_for()
    assert get_customer(engine, b)["phone"] == "44444444" and get_customer(engine, b)["city"] == "Odense"

    # create → the new customer is open → edit it
    page.get_by_text("New customer").click()
    new_form = page.locator('[data-testid="stForm"]').last
    new_form.get_by_label("Name", exact=True).fill("Gamma IVS")
    new_form.get_by_label("City", exact=True).fill("Vejle")
    new_form.get_by_role("button", name="Create customer").click()
    wait_idle(page)
    page.get_by_role("heading", name="Gamma IVS").wait_for()
    expect(_edit_form(page).get_by_label("City", exact=True)).to_have_value("Vejle")
    _fill(page, "Phone", "55555555")
    _save(page)
    page.get_by_text("Saved: phone.").wait_for()
    gamma = [c for c in (get_customer(engine, i) for i in range(b + 1, b + 3)) if c]
    assert [(c["name"], c["phone"], c["city"]) for c in gamma] == [("Gamma IVS", "55555555", "Vejle")]
