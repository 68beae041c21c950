"""Playwright in headless Chromium: upload a sample export on the import page, apply it, see the statistics."""

from __future__ import annotations

from sqlalchemy import text

from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures
from tests.test_excel_reader import sample
from tests.test_subscription_import import seed_sample_customers


def test_upload_sample_and_apply_in_chromium(engine, streamlit_server, browser_page):  # noqa: F811
    seed_sample_customers(engine)
    page = browser_page(streamlit_server(), "import_subscriptions")
    page.locator('input[type="file"]').set_input_files(str(sample("abonnementer-clean.xlsx")))
    wait_idle(page)
    page.get_by_text("Rejected and unmatched rows (1)").wait_for()
    page.get_by_role("button", name="Apply (4 change(s))").click()
    wait_idle(page)
    page.get_by_text("4 created, 0 updated").wait_for()
    link = page.get_by_role("link", name="Open run")
    link.wait_for()
    assert "run=" in (link.get_attribute("href") or "")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 4
