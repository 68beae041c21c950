"""Playwright in headless Chromium: preview the e-conomic relink against the simulator in a worker process, leave
the page while it reads, come back to the stored preview, approve in bulk, apply."""

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


def nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    wait_idle(page)


def test_preview_leave_come_back_approve_all_and_apply(engine, sim, monkeypatch, streamlit_server,  # noqa: F811
                                                       browser_page):  # noqa: F811
    with engine.begin() as conn:
        ids = insert_rows(conn, "customers", [
            {"name": "Alfa ApS", "cvr_number": make_cvr(1), "economic_customer_number": None, "zip": None},
            {"name": "Delta Data", "cvr_number": make_cvr(4), "economic_customer_number": 5, "zip": None},
            {"name": "Hotel Havblik", "cvr_number": None, "economic_customer_number": None, "zip": "9990"},
        ], run_id=None, user="seed")
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "120")  # the simulator is held while the test looks elsewhere
    page = browser_page(streamlit_server(), "economic")
    page.get_by_text("Press Preview").wait_for()
    with sim.paused():  # e-conomic answers nothing until the test has left the page and seen the progress
        page.get_by_role("button", name="Preview").click()
        page.get_by_text("Reading e-conomic").wait_for()
        nav(page, "Runs")
        page.get_by_test_id("stProgress").filter(has_text="(economic-relink").first.wait_for()
    nav(page, "e-conomic")
    page.get_by_text("Apply 1 link(s)").wait_for(timeout=60_000)  # the stored preview
    assert sim.request_count == 1 and list_runs(engine)[0]["status"] == "succeeded"
    page.get_by_role("button", name="Approve all shown").click()
    wait_idle(page)
    page.get_by_text("Apply 3 link(s)").wait_for()
    page.get_by_role("button", name="Apply 3 link(s)").click()
    page.get_by_text("Applied as run").wait_for(timeout=60_000)
    with engine.connect() as conn:
        now = dict(conn.execute(text("SELECT id, economic_customer_number FROM customers")).all())
    assert now[ids[0]] == 1 and now[ids[1]] == 4 and now[ids[2]] in (2, 3)
    applied = list_runs(engine)[0]
    assert (applied["kind"], applied["dry_run"], applied["status"]) == ("economic-relink", False, "succeeded")
    assert sim.request_count == 1 and all(r.method == "GET" for r in sim.requests)  # the apply read nothing
