"""Playwright in headless Chromium: the CVR lookup page against the cvrapi.dk simulator. The preview runs in a
worker process: leaving the page while it asks does not stop it, and coming back shows the stored preview,
which is accepted and applied as one recorded run."""

from __future__ import annotations

from lib.audit import insert_rows
from lib.customers import get_customer
from lib.cvr import make_cvr
from lib.job_worker import latest_run
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    wait_idle(page)


def test_preview_leave_come_back_accept_apply(engine, monkeypatch, streamlit_server, browser_page):  # noqa: F811
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
        monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "120")  # the simulator is held while the test looks elsewhere
        page = browser_page(streamlit_server(), "cvr_lookup")
        page.get_by_text("Customers without CVR").wait_for()

        with sim.paused():  # the simulator answers nothing until the test has left the page and seen the progress
            page.get_by_role("button", name="Preview").click()
            page.get_by_text("Looking up at cvrapi.dk").wait_for()
            nav(page, "Runs")
            progress = page.get_by_test_id("stProgress").filter(has_text="(cvr-lookup").first
            progress.wait_for()
            assert progress.inner_text().startswith("Preview ")
        nav(page, "CVR lookup")
        page.get_by_text("3 request(s) to cvrapi.dk").wait_for(timeout=60_000)  # the stored preview
        assert sim.request_count == 3 and latest_run(engine, "cvr-lookup", dry_run=True)["status"] == "succeeded"
        page.get_by_text("Apply writes 1 CVR number(s)").wait_for()

        page.get_by_text("Tvivlsom Tømrer → Tvivlsom Tømrer ApS").click()
        wait_idle(page)
        page.get_by_text("Apply writes 2 CVR number(s)").wait_for()
        page.get_by_role("button", name="Apply").click()
        page.get_by_text("Applied as run").wait_for(timeout=60_000)

        assert get_customer(engine, sure)["cvr_number"] == make_cvr(411)
        assert get_customer(engine, doubt)["cvr_number"] == make_cvr(412)
        assert get_customer(engine, unknown)["cvr_number"] is None
        applied = latest_run(engine, "cvr-lookup", dry_run=False)
        assert applied["status"] == "succeeded" and applied["stats"]["updated"] == 2
        assert sim.request_count == 3  # the apply wrote the stored preview; it asked nothing
