"""Playwright: the 2 KB corner-cell workbook that once stopped the server is refused on the Import page, and the
app goes on serving (another page, then the import of a real file)."""

from __future__ import annotations

from sqlalchemy import text

from lib.customers import create_customer
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures
from tests.test_excel_reader import sample
from tests.test_hostile_input import CORNER_CELL
from tests.test_subscription_import import seed_sample_customers


def test_corner_cell_upload_is_refused_and_the_server_lives(engine, streamlit_server, browser_page, tmp_path):  # noqa: F811
    seed_sample_customers(engine)
    create_customer(engine, {"name": "Efter Upload ApS"}, user="seed")
    corner = tmp_path / "corner.xlsx"
    corner.write_bytes(CORNER_CELL)
    base = streamlit_server()
    page = browser_page(base, "import_subscriptions")
    page.locator('input[type="file"]').set_input_files(str(corner))
    wait_idle(page)
    page.get_by_text("file refused: sheet 'Ark1' has a cell at XFD1048576", exact=False).first.wait_for(timeout=60_000)

    other = browser_page(base, "customers")  # the same server: still up
    other.get_by_role("heading", name="Customers").first.wait_for()
    other.get_by_text("Efter Upload ApS").first.wait_for(state="attached")  # a cell of the data grid

    page.locator('input[type="file"]').set_input_files(str(sample("abonnementer-clean.xlsx")))
    wait_idle(page)
    page.get_by_text("Rejected and unmatched rows (1)").wait_for(timeout=60_000)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 0
