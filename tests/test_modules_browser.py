"""Playwright in headless Chromium: enable a scaffolded module on the Modules page, use it, disable, remove data."""

from __future__ import annotations

from sqlalchemy import inspect

from lib.commands.create_module import create_module
from lib.modules import forget_discovery
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def go_to_modules_page(page) -> None:
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="Modules").click()
    wait_idle(page)
    page.get_by_role("heading", name="Modules").wait_for()


def open_module_panel(page, status: str):
    """Open the module's panel unless it is open already (the page keeps the last acted-on panel open)."""
    summary = page.get_by_test_id("stExpander").locator("summary").filter(has_text=f"crm_tools 0.1.0 · {status}")
    if summary.locator("xpath=..").get_attribute("open") is None:
        summary.click()
        wait_idle(page)


def test_enable_use_disable_remove_through_the_modules_page(engine, tmp_path, monkeypatch, streamlit_server,  # noqa: F811
                                                            browser_page):  # noqa: F811
    monkeypatch.setenv("MODULES_DIR", str(tmp_path / "modules"))
    monkeypatch.setenv("MODULES__CRM_TOOLS__READ_ONLY", "false")
    forget_discovery()
    create_module("crm_tools", "CRM helper tools")
    base = streamlit_server()
    page = browser_page(base)  # through Home.py, so st.navigation (not the app_pages/ folder) builds the sidebar
    sidebar = page.get_by_test_id("stSidebar")
    go_to_modules_page(page)
    assert sidebar.get_by_text("Crm Tools").count() == 0

    open_module_panel(page, "disabled")
    page.get_by_role("button", name="Enable").click()
    wait_idle(page)
    page.get_by_text("Enabled crm_tools.").wait_for()
    assert "crm_tools_items" in inspect(engine).get_table_names()
    sidebar.get_by_text("Crm Tools").wait_for()

    sidebar.get_by_text("Crm Tools").click()
    wait_idle(page)
    page.get_by_text("Dry-run mode").wait_for()
    page.get_by_label("Title").first.fill("Call Nordlys")
    page.get_by_role("button", name="Add").click()
    wait_idle(page)
    page.get_by_text("Dry run: this would be written; nothing was.").wait_for()

    go_to_modules_page(page)
    open_module_panel(page, "enabled")
    page.get_by_role("button", name="Disable").click()
    wait_idle(page)
    page.get_by_text("Disabled crm_tools.").wait_for()
    assert sidebar.get_by_text("Crm Tools").count() == 0

    open_module_panel(page, "disabled")
    page.get_by_role("button", name="Remove data…").click()
    wait_idle(page)
    page.get_by_text("crm_tools_items").first.wait_for()
    page.get_by_text("Yes, drop crm_tools's data").click()
    wait_idle(page)
    page.get_by_role("button", name="Drop now").click()
    wait_idle(page)
    page.get_by_text("Removed the data of crm_tools.").wait_for()
    assert "crm_tools_items" not in inspect(engine).get_table_names()
