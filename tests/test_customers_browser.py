"""Playwright in headless Chromium: open the app, search a customer, toggle the lock."""

from __future__ import annotations

from lib.customers import create_customer, get_customer
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


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
