"""Playwright in headless Chromium against a real server and the Simply-CRM simulator: preview, take CRM, apply."""

from __future__ import annotations

from sqlalchemy import text

from lib.demo_data import load_demo_data
from lib.sandbox import dataset, running_vtiger
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def test_preview_take_crm_and_apply(engine, streamlit_server, browser_page, monkeypatch):  # noqa: F811
    load_demo_data(engine)
    with running_vtiger(demo=True, mode="simply") as sim:
        monkeypatch.setenv("SIMPLYCRM_URL", sim.url)
        monkeypatch.setenv("SIMPLYCRM_USERNAME", sim.username)
        monkeypatch.setenv("SIMPLYCRM_ACCESS_KEY", sim.access_key)
        page = browser_page(streamlit_server(), "crm_sync")
        page.get_by_test_id("stSelectbox").click()
        page.get_by_role("option", name="Simply-CRM").click()
        wait_idle(page)
        page.get_by_role("button", name="Preview", exact=True).click()
        wait_idle(page)
        page.get_by_text("Preview: 3 Simply-CRM account(s)").wait_for()
        page.get_by_test_id("stRadio").get_by_text("take CRM", exact=True).click()
        wait_idle(page)
        page.get_by_text("including 1 row(s) you chose").wait_for()
        page.get_by_role("button", name="Apply", exact=True).click()
        wait_idle(page)
        page.get_by_text("Applied as run").wait_for()
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT name, cvr_number FROM customers")).all())
        kinds = [r[0] for r in conn.execute(text("SELECT kind FROM runs ORDER BY id"))]
    assert rows["Kærgård Bryggeri ApS"] == dataset.by_key("kaergaard").cvr
    assert rows["Græsrødder Landskab ApS"] == dataset.crm_accounts("simplycrm")[2]["cf_853"]  # taken from the CRM
    assert kinds[-1] == "crm-sync"
    assert sim.counts["update"] == sim.counts["revise"] == 0
