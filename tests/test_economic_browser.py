"""Playwright in headless Chromium: preview the e-conomic relink against the simulator, approve in bulk, apply."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.cvr import make_cvr
from lib.runs import list_runs
from lib.sandbox import EconomicSimulator, make_customer
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


@pytest.fixture
def sim(monkeypatch):
    with EconomicSimulator() as s:
        s.customers = [
            make_customer(1, "Alfa ApS", cvr=f"DK {make_cvr(1)}"),
            make_customer(2, "Hotel Havblik ApS", zip="9990"),
            make_customer(3, "Hotel Havblik ApS", zip="9990"),
            make_customer(4, "Delta Data ApS", cvr=make_cvr(4)),
            make_customer(5, "Juliet Jern ApS"),
        ]
        monkeypatch.setenv("ECONOMIC_API_URL", s.url)
        monkeypatch.setenv("ECONOMIC_APP_SECRET_TOKEN", s.app_secret_token)
        monkeypatch.setenv("ECONOMIC_AGREEMENT_GRANT_TOKEN", s.agreement_grant_token)
        yield s


def test_preview_approve_all_and_apply(engine, sim, streamlit_server, browser_page):  # noqa: F811
    with engine.begin() as conn:
        ids = insert_rows(conn, "customers", [
            {"name": "Alfa ApS", "cvr_number": make_cvr(1), "economic_customer_number": None, "zip": None},
            {"name": "Delta Data", "cvr_number": make_cvr(4), "economic_customer_number": 5, "zip": None},
            {"name": "Hotel Havblik", "cvr_number": None, "economic_customer_number": None, "zip": "9990"},
        ], run_id=None, user="seed")
    page = browser_page(streamlit_server(), "economic")
    page.get_by_text("Press Preview").wait_for()
    page.get_by_role("button", name="Preview").click()
    wait_idle(page)
    page.get_by_text("Apply 1 link(s)").wait_for()
    assert sim.request_count == 1
    page.get_by_role("button", name="Approve all shown").click()
    wait_idle(page)
    page.get_by_text("Apply 3 link(s)").wait_for()
    page.get_by_role("button", name="Apply 3 link(s)").click()
    wait_idle(page)
    page.get_by_text("Applied as run").wait_for()
    with engine.connect() as conn:
        now = dict(conn.execute(text("SELECT id, economic_customer_number FROM customers")).all())
    assert now[ids[0]] == 1 and now[ids[1]] == 4 and now[ids[2]] in (2, 3)
    assert list_runs(engine)[0]["kind"] == "economic-relink"
    assert all(r.method == "GET" for r in sim.requests)
