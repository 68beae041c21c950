"""Playwright in headless Chromium: undo twice on the Runs page (issue #15), on SQLite and PostgreSQL."""

from __future__ import annotations

from playwright.sync_api import expect

from lib.customers import create_customer, get_customer, update_customer
from lib.runs import get_run, list_runs
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def undo_on_page(page, run_id: int) -> None:
    """Tick the confirmation, wait until Undo is enabled (the page's live panel reruns meanwhile), click it."""
    button = page.get_by_role("button", name="Undo run")
    for _attempt in range(3):
        page.get_by_text("I want to revert the", exact=False).first.click()
        wait_idle(page)
        try:
            expect(button).to_be_enabled(timeout=10_000)
            break
        except AssertionError:
            continue
    button.click()
    page.get_by_text(f"Run {run_id} undone as run", exact=False).wait_for()  # the page drawn after the undo
    wait_idle(page)


def test_undo_twice_on_the_runs_page(engine, streamlit_server, browser_page):  # noqa: F811
    """Edit B over edit A; undo B, then undo A, in the browser: each shows 'Undone by', Undo disabled."""
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="local-admin")
    update_customer(engine, cid, {"city": "Aarhus"}, user="local-admin")
    a = list_runs(engine)[0]["run_id"]
    update_customer(engine, cid, {"city": "Odense"}, user="local-admin")
    b = list_runs(engine)[0]["run_id"]
    base = streamlit_server()

    page = browser_page(base, f"runs?run={b}")
    page.get_by_text(f"Run {b}: customer-edit").wait_for()
    undo_on_page(page, b)
    undo_b = get_run(engine, b)["undone_by_run_id"]
    page.get_by_text(f"Run {b} undone as run {undo_b}").wait_for()
    page.get_by_text(f"Run {b}: customer-edit").wait_for()  # the same run, not an empty page
    page.get_by_test_id("stMetric").filter(has_text="Undone by").get_by_text(f"#{undo_b}").wait_for()
    assert page.get_by_role("button", name="Undo run").is_disabled()
    assert get_customer(engine, cid)["city"] == "Aarhus"

    page = browser_page(base, f"runs?run={a}")
    page.get_by_text(f"Run {a}: customer-edit").wait_for()
    undo_on_page(page, a)
    undo_a = get_run(engine, a)["undone_by_run_id"]
    page.get_by_text(f"Run {a} undone as run {undo_a}").wait_for()
    page.get_by_test_id("stMetric").filter(has_text="Undone by").get_by_text(f"#{undo_a}").wait_for()
    assert page.get_by_role("button", name="Undo run").is_disabled()
    assert get_customer(engine, cid)["city"] is None
    assert not page.get_by_test_id("stException").count()
