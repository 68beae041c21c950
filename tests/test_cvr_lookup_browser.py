"""Playwright in headless Chromium: the CVR lookup page against the cvrapi.dk simulator (preview, accept, apply)."""

from __future__ import annotations

from lib.audit import insert_rows
from lib.customers import get_customer
from lib.cvr import make_cvr
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def test_preview_accept_apply_in_the_browser(engine, monkeypatch, streamlit_server, browser_page):  # noqa: F811
    with CvrApiSimulator() as sim:
        sim.add_company(make_cvr(411), "Sikker Software ApS", zipcode="8000", city="Aarhus C")
        sim.add_company(make_cvr(412), "Tvivlsom Tømrer ApS", zipcode="8000", city="Aarhus C")
        rows = [{"name": "Sikker Software ApS", "cvr_number": None, "zip": "8000"},
                {"name": "Tvivlsom Tømrer", "cvr_number": None, "zip": "9000"},
                {"name": "Ingen Steder ApS", "cvr_number": None, "zip": None}]
        with engine.begin() as conn:
            sure, doubt, unknown = insert_rows(conn, "customers", rows, run_id=None, user="seed")
        monkeypatch.setenv("CVR_API_URL", sim.url)
        monkeypatch.setenv("CVR_USER_AGENT", SANDBOX_USER_AGENT)
        page = browser_page(streamlit_server(), "cvr_lookup")
        page.get_by_text("Customers without CVR").wait_for()

        page.get_by_role("button", name="Preview").click()
        wait_idle(page)
        page.get_by_text("3 request(s) to cvrapi.dk").wait_for()
        assert sim.request_count == 3
        page.get_by_text("Apply writes 1 CVR number(s)").wait_for()

        page.get_by_text("Tvivlsom Tømrer → Tvivlsom Tømrer ApS").click()
        wait_idle(page)
        page.get_by_text("Apply writes 2 CVR number(s)").wait_for()
        page.get_by_role("button", name="Apply").click()
        wait_idle(page)
        page.get_by_text("Applied").wait_for()

        assert get_customer(engine, sure)["cvr_number"] == make_cvr(411)
        assert get_customer(engine, doubt)["cvr_number"] == make_cvr(412)
        assert get_customer(engine, unknown)["cvr_number"] is None
        assert sim.request_count == 3
