"""create-module → enable → page and CRUD → disable → remove data, and the names create-module refuses."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import inspect, text
from streamlit.testing.v1 import AppTest

from lib.cli import main
from lib.modules import forget_discovery, load_registry
from tests.apptest import texts
from tests.test_module_pages import nav_app


@pytest.fixture
def empty_modules(tmp_path, monkeypatch):
    folder = tmp_path / "modules"
    folder.mkdir()
    monkeypatch.setenv("MODULES_DIR", str(folder))
    forget_discovery()
    yield folder
    forget_discovery()


def page_app(folder, name: str) -> AppTest:
    return AppTest.from_file(str(folder / name / "page.py"), default_timeout=60)


def items(engine, name: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT title, note FROM {name}_items ORDER BY id"))]


def test_scaffold_replaces_every_placeholder_and_starts_disabled(empty_modules, capsys):
    assert main(["create-module", "crm_tools", 'Notes about "CRM" accounts', "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    folder = empty_modules / "crm_tools"
    assert out["enabled"] is False and "migrations/001_init.sql" in out["files"] and "page.py" in out["files"]
    manifest = json.loads((folder / "module.json").read_text())
    assert manifest["name"] == "crm_tools" and manifest["enabled"] is False
    assert manifest["description"] == 'Notes about "CRM" accounts' and manifest["title"] == "Crm Tools"
    assert manifest["config"] == {"READ_ONLY": True, "DRY_RUN": True}
    for path in folder.rglob("*"):
        if path.is_file():
            content = path.read_text()
            assert "template_module" not in content.lower() and "Template Module" not in content, path
    assert "CREATE TABLE crm_tools_items" in (folder / "migrations" / "001_init.sql").read_text()
    assert "MODULES__CRM_TOOLS__READ_ONLY" in (folder / "README.md").read_text()
    assert 'Notes about "CRM" accounts' in (folder / "README.md").read_text()
    compile((folder / "page.py").read_text(), "page.py", "exec")


@pytest.mark.parametrize("name", ["Bad", "x", "1abc", "crm-tools", "../escape", "a" * 41, "core", "run", "_template",
                                  "name\n"])
def test_invalid_names_are_refused_and_nothing_is_written(empty_modules, capsys, name):
    assert main(["create-module", name, "Some description"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert list(empty_modules.iterdir()) == []


def test_existing_module_and_bad_description_are_refused(empty_modules, capsys):
    assert main(["create-module", "crm_tools", "First"]) == 0
    before = (empty_modules / "crm_tools" / "module.json").read_text()
    assert main(["create-module", "crm_tools", "Second"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (empty_modules / "crm_tools" / "module.json").read_text() == before
    assert main(["create-module", "other_tools", "two\nlines"]) == 2
    assert not (empty_modules / "other_tools").exists()
    assert sorted(p.name for p in empty_modules.iterdir()) == ["crm_tools"]


def test_module_lifecycle_from_scaffold_to_removed_data(engine, empty_modules, monkeypatch, capsys):
    """The whole lifecycle: page visible, CRUD honouring READ_ONLY and DRY_RUN, page gone, tables gone."""
    assert main(["create-module", "crm_tools", "CRM helper tools"]) == 0
    assert "modules enable crm_tools" in capsys.readouterr().out
    assert nav_app().session_state["urls"] == []

    assert main(["modules", "enable", "crm_tools"]) == 0
    assert "crm_tools_items" in inspect(engine).get_table_names()
    assert nav_app().session_state["urls"] == ["mod_crm_tools_page"]
    assert main(["modules", "health", "crm_tools"]) == 0

    # READ_ONLY (the default): the page says so and writes nothing
    at = page_app(empty_modules, "crm_tools").run()
    assert not at.exception and "Read-only mode" in texts(at)
    assert at.button(key="crm_tools_add").disabled

    # DRY_RUN: shows what would be written
    monkeypatch.setenv("MODULES__CRM_TOOLS__READ_ONLY", "false")
    at = page_app(empty_modules, "crm_tools").run()
    assert "Dry-run mode" in texts(at)
    at.text_input(key="crm_tools_new_title").input("Call Nordlys")
    at.button(key="crm_tools_add").click().run()
    assert not at.exception
    assert "Dry run: this would be written; nothing was." in texts(at)
    assert "INSERT INTO crm_tools_items" in at.code[0].value and "Call Nordlys" in at.code[0].value
    assert items(engine, "crm_tools") == []

    # both switches off: create, edit, delete
    monkeypatch.setenv("MODULES__CRM_TOOLS__DRY_RUN", "false")
    at = page_app(empty_modules, "crm_tools").run()
    at.text_input(key="crm_tools_new_title").input("Call Nordlys")
    at.text_area(key="crm_tools_new_note").input("about renewal")
    at.button(key="crm_tools_add").click().run()
    assert not at.exception and "Added “Call Nordlys”." in texts(at)
    assert items(engine, "crm_tools") == [("Call Nordlys", "about renewal")]
    at.text_input(key="crm_tools_new_title").input("Second")
    at.button(key="crm_tools_add").click().run()
    at.text_input(key="crm_tools_edit_title").input("Call Nordlys ApS")
    at.button(key="crm_tools_save").click().run()
    assert not at.exception
    assert items(engine, "crm_tools")[0] == ("Call Nordlys ApS", "about renewal")
    at.selectbox(key="crm_tools_edit_id").select_index(1)
    at.button(key="crm_tools_delete").click().run()
    assert items(engine, "crm_tools") == [("Call Nordlys ApS", "about renewal")]

    assert main(["modules", "disable", "crm_tools"]) == 0
    assert nav_app().session_state["urls"] == []
    assert main(["modules", "remove-data", "crm_tools", "--apply"]) == 0
    assert "crm_tools_items" not in inspect(engine).get_table_names()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM module_migrations WHERE module = 'crm_tools'")).scalar() == 0
    assert load_registry(engine).get("crm_tools").status == "disabled"
