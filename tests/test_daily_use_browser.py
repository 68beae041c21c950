"""Daily use in Chromium (issue #19): every core page at a large data size reads cleanly, and the try-it path works.

1. Each core page, with 5,000 customers, 20,000 subscriptions, 200 runs and 20,000 change rows (a tenth of
   bench_pages' customers and subscriptions): a screenshot, then every table cell and metric value read from the
   page's DOM (st.dataframe's grid keeps an accessible <table> of the rows it draws) must pass `cell_problem`:
   no "None"/"nan"/"NaT", no raw JSON, one number format (Danish: 1.234,56).
2. The try-it path: Load demo data on the dashboard → upload samples/abonnementer-demo.xlsx → 28 to create,
   1 unmatched, 1 rejected → Apply (a worker process) → undo the run on the Runs page → no subscriptions.
"""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import text

from tests.browser import browser_page, streamlit_server  # noqa: F401 - fixtures
from tests.conftest import ROOT
from tests.test_runs_browser import undo_on_page

# (url path, the page's h1; the Dashboard's is the app's name)
CORE_PAGES = [("", "BMC Hub"), ("customers", "Customers"), ("subscriptions", "Subscriptions"), ("runs", "Runs"),
              ("import_subscriptions", "Import subscriptions"), ("cvr_lookup", "CVR lookup"),
              ("economic", "e-conomic"), ("crm_sync", "CRM sync"), ("integrations", "Integrations"),
              ("modules", "Modules"), ("sessions", "Sessions")]

EMPTY_WORDS = {"none", "nan", "nat", "null", "<na>"}
# Columns that hold identifiers, not quantities: their digits are shown as stored (CVR 12345678, customer 100001).
IDENTIFIER_COLUMN = re.compile(r"(^|\b)(id|#|cvr|number|no\.?|nr\.?|zip|postcode|phone|run|row|external|account|"
                               r"sku|version|port|year)(\b|$)", re.IGNORECASE)
DANISH_NUMBER = re.compile(r"^[-−]?\d{1,3}(\.\d{3})*(,\d{1,2})?$")  # decimals: 1 or 2 (",000" reads as thousands)
PLAIN_NUMBER = re.compile(r"^[-−]?[\d.,]*\d$")  # the whole text is a number in some format
ENGLISH_THOUSANDS = re.compile(r"(?<![\d.,])\d{1,3}(,\d{3})+(?![\d,])")  # "1,000" / "30,000" inside any text


def cell_problem(value: str, column: str = "") -> str | None:
    """Why a cell or metric text breaks the one way to show values (lib/formatting.py), or None when it is fine.

    - an empty value shows blank: never "None", "nan", "NaT", "null";
    - no raw JSON: nothing starting with "{" or "[" and holding '":';
    - a number is Danish: "." groups thousands and "," starts decimals ("30.000", "2.384,21"); "30000",
      "1,000" and "833.33" are refused. Identifier columns (id, CVR, number, zip, …) keep their digits.
    """
    cell = value.strip()
    amount = cell.removesuffix(" kr.").removesuffix("%").strip()
    if cell.lower() in EMPTY_WORDS:
        return "an empty value shown as a word"
    if cell[:1] in "{[" and '":' in cell:
        return "raw JSON"
    if ENGLISH_THOUSANDS.search(cell):
        return "English thousands separator"
    if PLAIN_NUMBER.match(amount) and not DANISH_NUMBER.match(amount):
        if column and IDENTIFIER_COLUMN.search(column):
            return None
        return "not in the Danish number format"
    return None


@pytest.mark.parametrize(("value", "column", "bad"), [
    ("None", "", True), ("nan", "", True), ("NaT", "", True), ('{"found": 7}', "stats", True),
    ("30000", "rows", True), ("1,000", "", True), ("833.33", "price", True), ("95826 created", "", False),
    ("1,000 created", "summary", True), ("30.000", "", False), ("2.384,21 kr.", "", False), ("833,33", "", False),
    ("12345678", "CVR", False), ("4999", "id", False), ("12-03-2026 11:00", "", False), ("", "", False),
    ("Kunde 00001 A/S", "name", False), ("0.1.0", "version", False), ("7 of 10 found", "", False),
])
def test_cell_rules(value, column, bad):
    """The checker can fail: each rule refuses its example and lets the right format through."""
    assert (cell_problem(value, column) is not None) == bad, (value, cell_problem(value, column))


def settle(page, timeout: float = 90) -> None:
    """Wait until the script run is over (the app says notRunning) and nothing shows a loading skeleton."""
    deadline = time.time() + timeout
    quiet_since = None
    while time.time() < deadline:
        busy = page.evaluate("""() => {
            const app = document.querySelector('[data-testid="stApp"]');
            const running = !app || app.getAttribute('data-test-script-state') === 'running';
            return running || !!document.querySelector('[data-testid="stSkeleton"]')
                || !!document.querySelector('[data-stale="true"]');
        }""")
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 0.8:
            return
        page.wait_for_timeout(200)
    raise TimeoutError("the page kept running")


def read_tables(page) -> list[tuple[str, str]]:
    """(column header, cell text) of every cell of every st.dataframe / st.table drawn on the page."""
    return page.evaluate("""() => {
        const out = [];
        const tables = document.querySelectorAll(
            '[data-testid="stDataFrame"] table, [data-testid="stTable"] table, [data-testid="stDataFrameResizable"] table');
        for (const table of tables) {
            const heads = [...table.querySelectorAll('thead th, [role="columnheader"]')].map(h => h.innerText.trim());
            for (const row of table.querySelectorAll('tbody tr')) {
                [...row.querySelectorAll('td, th')].forEach((cell, i) => out.push([heads[i] || '', cell.innerText]));
            }
        }
        return out;
    }""")


def page_problems(page) -> tuple[list[str], int]:
    cells = read_tables(page)
    metrics = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    problems = [f"{column!r}: {value!r} ({why})" for column, value in cells
                if (why := cell_problem(value, column))]
    problems += [f"metric {value!r} ({why})" for value in metrics if (why := cell_problem(value))]
    return problems, len(cells) + len(metrics)


def open_page(page, base: str, path: str, title: str) -> None:
    page.goto(f"{base}/{path}")
    page.locator('[data-testid="stMain"] h1').filter(has_text=title).first.wait_for(timeout=90_000)
    settle(page)


def build_large(url: str, monkeypatch) -> dict:
    """5,000 customers, 20,000 subscriptions, 200 runs, 20,000 changes: bench_pages' builder at a tenth
    (its change rows cut to a hundredth, which is what keeps this under a minute per database)."""
    from bench import bench_pages

    monkeypatch.setattr(bench_pages, "CHANGES", 200_000)
    return bench_pages.build(url, 0.1, rebuild=False)


def test_core_pages_read_cleanly_at_a_large_size(db_url, streamlit_server, browser_page, tmp_path,  # noqa: F811
                                                 monkeypatch):
    started = time.perf_counter()
    built = build_large(db_url, monkeypatch)
    assert built["customers"] == 5000
    base = streamlit_server()
    page = None
    failures: dict[str, list[str]] = {}
    read: dict[str, int] = {}
    for path, title in CORE_PAGES:
        if page is None:
            page = browser_page(base, path)
            page.locator('[data-testid="stMain"] h1').filter(has_text=title).first.wait_for(timeout=90_000)
            settle(page)
        else:
            open_page(page, base, path, title)
        page.screenshot(path=str(tmp_path / f"{path or 'dashboard'}.png"), full_page=True)
        assert not page.get_by_test_id("stException").count(), f"{title}: {page.get_by_test_id('stException').inner_text()}"
        problems, read[title] = page_problems(page)
        if problems:
            failures[title] = problems[:8]
    assert not failures, failures
    # the large tables were read, not skipped: the dashboard, Customers, Subscriptions and Runs draw rows
    for title in ("BMC Hub", "Customers", "Subscriptions", "Runs"):
        assert read[title] > 10, (title, read[title])
    print(f"pages read in {time.perf_counter() - started:.1f} s: {read}")


def test_try_it_path_import_apply_undo(db_url, streamlit_server, browser_page):  # noqa: F811
    """Load demo data → import the shipped sample → apply in a worker → undo on the Runs page → none left."""
    from lib.db import get_engine
    from lib.migrations import migrate_core

    engine = get_engine(db_url)
    migrate_core(engine)
    base = streamlit_server()
    page = browser_page(base)
    page.get_by_role("button", name="Load demo data").click()
    page.get_by_text(re.compile(r"^Loaded \d+ demo customers")).wait_for(timeout=60_000)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar_one() > 0

    open_page(page, base, "import_subscriptions", "Import subscriptions")
    page.locator('input[type="file"]').set_input_files(str(ROOT / "samples" / "abonnementer-demo.xlsx"))
    page.get_by_role("button", name=re.compile(r"^Apply \(28 ")).wait_for(timeout=90_000)
    settle(page)
    metric = {label.split("\n")[0].strip(): value for label, value in zip(
        page.locator('[data-testid="stMetricLabel"]').all_inner_texts(),
        page.locator('[data-testid="stMetricValue"]').all_inner_texts(), strict=True)}
    assert (metric["Create"], metric["Unmatched"], metric["Rejected"]) == ("28", "1", "1"), metric
    problems, read = page_problems(page)
    assert read > 30 and not problems, problems  # the preview's tables and the rejected rows read cleanly too

    page.get_by_role("button", name=re.compile(r"^Apply \(28 ")).click()
    page.get_by_text(re.compile(r"Applied as run \d+: 28 created")).wait_for(timeout=120_000)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 28
        run_id = conn.execute(text("SELECT max(id) FROM runs WHERE kind = 'import-subscriptions' AND dry_run = :f"),
                              {"f": False}).scalar_one()
    settle(page)

    open_page(page, base, f"runs?run={run_id}", "Runs")
    problems, read = page_problems(page)
    assert read > 28 and not problems, problems  # the run's changes: 28 created rows
    undo_on_page(page, run_id)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 0

    open_page(page, base, "subscriptions", "Subscriptions")
    page.get_by_text("No subscriptions yet", exact=False).wait_for()
    assert not page.get_by_test_id("stException").count()
