"""Playwright in headless Chromium: enable cvr_watch on the Modules page, switch its safety settings off, run it
against the cvrapi simulator, acknowledge an alert, take the register's name, undo that on the Runs page."""

from __future__ import annotations

import re
import shutil

from sqlalchemy import text

from lib.audit import insert_rows
from lib.customers import get_customer
from lib.module_sandbox import drop_roles_of_schema
from lib.modules import forget_discovery, get_module_config
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator, dataset, seed_demo
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures
from tests.conftest import ROOT

RENAMED = dataset.by_key("noerrebro")


def module_panel(page):
    """cvr_watch's panel on the Modules page (the dependency graph's expander names it too)."""
    return page.get_by_test_id("stExpander").filter(has=page.locator("summary").filter(has_text="CVR watch"))


def test_enable_configure_run_acknowledge_take_name_and_undo(engine, tmp_path, monkeypatch, streamlit_server,  # noqa: F811
                                                             browser_page):  # noqa: F811
    root = tmp_path / "modules"
    shutil.copytree(ROOT / "modules" / "cvr_watch", root / "cvr_watch")
    monkeypatch.setenv("MODULES_DIR", str(root))
    forget_discovery()
    rows = [{"cvr_number": None, "zip": None, "city": None, **r} for r in dataset.hub_customers()]
    with engine.begin() as conn:
        ids = dict(zip([r["name"] for r in rows], insert_rows(conn, "customers", rows, run_id=None, user="seed"),
                       strict=True))
    with CvrApiSimulator() as sim:
        seed_demo(sim)
        base = streamlit_server({"CVR_API_URL": sim.url, "CVR_USER_AGENT": SANDBOX_USER_AGENT})
        page = browser_page(base)
        sidebar = page.get_by_test_id("stSidebar")

        # enable it on the Modules page
        sidebar.get_by_role("link", name="Modules").click()
        wait_idle(page)
        panel = module_panel(page)
        panel.locator("summary").click()
        wait_idle(page)
        panel.get_by_role("button", name="Enable").click()
        wait_idle(page)
        page.get_by_text("Enabled cvr_watch.").wait_for()

        # switch READ_ONLY and DRY_RUN off in its settings
        panel = module_panel(page)  # still open after the rerun
        for key in ("READ_ONLY", "DRY_RUN"):
            panel.get_by_test_id("stCheckbox").filter(has_text=key).locator("label").first.click()
            wait_idle(page)
        panel.get_by_role("button", name="Save settings").click()
        wait_idle(page)
        page.get_by_text(re.compile(r"Saved .*READ_ONLY")).wait_for()
        assert get_module_config("cvr_watch", "DRY_RUN", engine=engine) is False

        # run it against the simulator from its page
        sidebar.get_by_text("CVR watch").click()
        wait_idle(page)
        page.get_by_role("button", name="Check the register now").click()
        wait_idle(page)
        page.get_by_text(re.compile(r"Run \d+: checked 4 .*4 new alert")).wait_for()
        page.get_by_text("Under konkursbehandling").wait_for()

        # acknowledge the bankruptcy alert
        with engine.connect() as conn:
            alert_id = conn.execute(text("SELECT id FROM cvr_watch_alerts WHERE kind = 'bankruptcy'")).scalar()
        page.locator(f".st-key-cvr_watch_ack_{alert_id} button").click()
        wait_idle(page)
        page.get_by_text(re.compile(r"Alert \d+ acknowledged")).wait_for()
        page.wait_for_function("() => !document.body.innerText.includes('Under konkursbehandling')")

        # take the register's name
        with engine.connect() as conn:
            name_alert = conn.execute(text("SELECT id FROM cvr_watch_alerts WHERE kind = 'name'")).scalar()
        done = page.get_by_text(re.compile(r"now has name → Nørrebro Cykelværksted ApS \(run \d+"))
        for _attempt in range(3):  # a click landing while a fragment reruns is lost; the action itself is idempotent
            take = page.locator(f".st-key-cvr_watch_take_{name_alert} button")
            if take.count():
                take.click()
            wait_idle(page, timeout=60_000)
            try:
                done.wait_for(timeout=10_000)
                break
            except Exception:  # noqa: BLE001 - try the click again
                continue
        done.wait_for(timeout=30_000)
        run_id = int(re.search(r"\(run (\d+)", done.inner_text()).group(1))
        assert get_customer(engine, ids[RENAMED.name])["name"] == "Nørrebro Cykelværksted ApS"

        # undo it on the Runs page
        page = browser_page(base, f"runs?run={run_id}")
        page.get_by_text(f"Run {run_id}: customer-edit").wait_for()
        page.get_by_text("I want to revert the", exact=False).first.click()
        wait_idle(page)
        page.get_by_role("button", name="Undo run").click()
        wait_idle(page)
        page.get_by_text(f"Run {run_id} undone as run").wait_for()
        assert get_customer(engine, ids[RENAMED.name])["name"] == RENAMED.name
        assert not page.get_by_test_id("stException").count()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        drop_roles_of_schema(engine, db, schema)
