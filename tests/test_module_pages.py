"""Module pages in the app (AppTest): navigation, isolation of broken modules, the Modules settings page."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from lib.modules import enable_module, load_registry, page_views
from lib.roles import Actor
from tests.apptest import texts
from tests.conftest import ROOT
from tests.test_modules import modules_dir  # noqa: F401 - fixture

NAV_SCRIPT = textwrap.dedent(
    """
    import streamlit as st
    from ui.module_pages import module_navigation_pages, render_module_page

    pages = module_navigation_pages(st.session_state.get("role", "admin"))
    st.session_state["urls"] = [p.url_path for p in pages]
    target = st.session_state.get("render")
    if target:
        render_module_page(*target)
    else:
        home = st.Page(lambda: st.markdown("core home"), title="Home", url_path="home", default=True)
        st.navigation({"Core": [home], "Modules": pages} if pages else [home]).run()
    """
)
BROKEN = ("render_error", "import_error", "hanging_health")

ADMIN = Actor("t", "admin")


def nav_app(**state) -> AppTest:
    at = AppTest.from_string(NAV_SCRIPT, default_timeout=60)
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def test_navigation_lists_enabled_modules_and_the_app_still_renders(engine, modules_dir):  # noqa: F811
    """Every fixture present, broken ones enabled: the app renders, only enabled modules are in the navigation."""
    for name in ("good", "needs_good", *BROKEN):
        enable_module(engine, name, ADMIN)
    at = nav_app()
    assert not at.exception
    assert "core home" in texts(at)
    assert sorted(at.session_state["urls"]) == sorted(
        ["mod_good_page", "mod_needs_good_page", "mod_render_error_page", "mod_import_error_page",
         "mod_hanging_health_page"])
    assert "mod_good_page" not in nav_app(role="viewer").session_state["urls"]  # good needs operator


def test_enable_and_disable_take_effect_on_the_next_rerun(engine, modules_dir):  # noqa: F811
    at = nav_app()
    assert at.session_state["urls"] == []
    enable_module(engine, "good", ADMIN)
    at.run()
    assert at.session_state["urls"] == ["mod_good_page"]
    from lib.modules import disable_module

    disable_module(engine, "good", ADMIN)
    at.run()
    assert at.session_state["urls"] == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("render_error", "RuntimeError: boom while rendering"),
        ("import_error", "ModuleNotFoundError: No module named 'hub_module_that_does_not_exist'"),
        ("hanging_health", "timed out after 1 s"),
    ],
)
def test_a_broken_module_page_shows_its_error_and_is_recorded(engine, modules_dir, name, expected):  # noqa: F811
    enable_module(engine, name, ADMIN)
    at = nav_app(render=(name, "page.py"))
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(expected in e or "still running" in e for e in errors), errors
    view = page_views(engine)[name]["page.py"]
    assert view["views"] == 1 and view["last_error"]
    assert load_registry(engine).get("good").status == "disabled"  # nothing else changed


def test_a_good_module_page_renders_and_counts_views(engine, modules_dir, monkeypatch):  # noqa: F811
    enable_module(engine, "good", ADMIN)
    monkeypatch.setenv("MODULES__GOOD__LIMIT", "7")
    at = nav_app(render=("good", "page.py"))
    assert not at.exception and not at.error
    assert "good page ok, limit 7" in texts(at)
    at.run()
    assert page_views(engine)["good"]["page.py"]["views"] == 2
    with engine.connect() as conn:  # viewing is a read: a page that renders writes nothing
        assert conn.execute(text("SELECT count(*) FROM module_page_views")).scalar() == 0


def test_a_disabled_module_page_says_so_instead_of_running(engine, modules_dir):  # noqa: F811
    at = nav_app(render=("good", "page.py"))
    assert not at.exception
    assert "Module good is disabled" in at.error[0].value


def test_modules_settings_page_renders_with_every_fixture_and_enables(engine, modules_dir):  # noqa: F811
    for name in ("render_error", "hanging_health"):
        enable_module(engine, name, ADMIN)
    at = AppTest.from_file(str(ROOT / "app_pages" / "modules.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = texts(at)
    assert "dependency cycle: cycle_a → cycle_b → cycle_a" in shown
    assert "needs BMC Hub >=99.0" in shown
    assert "timed out" in shown or "still running" in shown
    at.button(key="modules_enable_good").click().run()
    assert not at.exception
    assert "Enabled good." in texts(at)
    assert load_registry(engine).get("good").enabled
    at.button(key="modules_enable_half_migration").click().run()
    assert "half_migration/001_init.sql failed" in texts(at)
    assert not load_registry(engine).get("half_migration").enabled


def test_settings_page_disable_warns_about_dependants_and_remove_data_confirms(engine, modules_dir):  # noqa: F811
    enable_module(engine, "good", ADMIN)
    enable_module(engine, "needs_good", ADMIN)
    at = AppTest.from_file(str(ROOT / "app_pages" / "modules.py"), default_timeout=60).run()
    assert "Disabling good also takes down: needs_good." in texts(at)
    at.button(key="modules_disable_good").click().run()
    assert "Disabled good. Now unavailable too: needs_good." in texts(at)
    at.button(key="modules_remove_start_good").click().run()
    assert "table `good_items`" in texts(at)
    assert at.button(key="modules_remove_go_good").disabled
    at.checkbox(key="modules_remove_sure_good").check().run()
    at.button(key="modules_remove_go_good").click().run()
    assert "Removed the data of good." in texts(at)
    from sqlalchemy import inspect

    assert "good_items" not in inspect(engine).get_table_names()


def test_home_renders_with_every_fixture_module(engine, modules_dir):  # noqa: F811
    """The lead's Home.py with all fixture modules (broken ones enabled) still renders."""
    if not (ROOT / "Home.py").is_file():
        pytest.skip("Home.py not written yet")
    for name in ("good", *BROKEN):
        enable_module(engine, name, ADMIN)
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
