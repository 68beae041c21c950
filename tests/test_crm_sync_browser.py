"""Playwright in headless Chromium against a real server and the Simply-CRM simulator: preview, take CRM, apply;
then the write-back, which runs in a worker process: leave for Runs while it writes, come back to its statistics."""

from __future__ import annotations

from sqlalchemy import text

from lib.demo_data import load_demo_data
from lib.sandbox import dataset, running_vtiger
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def nav(page, title: str) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    wait_idle(page)


def test_preview_take_crm_apply_and_write_back(engine, streamlit_server, browser_page, monkeypatch):  # noqa: F811
    load_demo_data(engine)
    with running_vtiger(demo=True, mode="simply") as sim:
        monkeypatch.setenv("CRM_WRITE_BACK", "true")
        monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "120")  # the simulator is held while the test looks elsewhere
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
        assert sim.counts["update"] == sim.counts["revise"] == 0  # the sync wrote nothing to the CRM

        kaergaard = next(a for a in sim.accounts if a["accountname"] == "Kærgård Bryggeri ApS")
        kaergaard["cf_853"] = ""  # someone emptied the CVR field in the CRM: the Hub's CVR can fill it
        page.get_by_role("button", name="Preview write-back").click()
        wait_idle(page)
        page.get_by_role("button", name="Write to CRM (1)").wait_for()  # the preview reads the CRM in a worker
        with sim.paused():  # the CRM answers nothing until the test has left the page and seen the progress
            page.get_by_role("button", name="Write to CRM (1)").click()
            page.get_by_text("Writing to Simply-CRM").wait_for()
            nav(page, "Runs")
            page.get_by_test_id("stProgress").filter(has_text="(crm-write-back").first.wait_for()
        nav(page, "CRM sync")
        page.get_by_text("Written to Simply-CRM as run").wait_for(timeout=60_000)
        page.get_by_test_id("stMetric").filter(has_text="Written").get_by_text("1", exact=True).wait_for()
        assert kaergaard["cf_853"] == dataset.by_key("kaergaard").cvr and sim.counts["update"] == 1
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT name, cvr_number FROM customers")).all())
        kinds = [r[0] for r in conn.execute(text("SELECT kind FROM runs ORDER BY id"))]
    assert rows["Kærgård Bryggeri ApS"] == dataset.by_key("kaergaard").cvr
    assert rows["Græsrødder Landskab ApS"] == dataset.crm_accounts("simplycrm")[2]["cf_853"]  # taken from the CRM
    assert kinds[-3:] == ["crm-sync", "crm-write-back", "crm-write-back"]  # the sync's apply; write-back preview, write
