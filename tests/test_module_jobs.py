"""A module adds a job without a core file changed: the template's example job, scaffolded by create-module into a
temporary MODULES_DIR, runs from `manage.py job run MODULE.JOB` with the runner's guarantees and exit codes."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from lib.cli import main
from lib.module_sandbox import ConfinementError, drop_roles_of_schema
from lib.modules import audited_update, forget_discovery, module_connection
from lib.runs import UndoRefused, list_runs, start_run, undo_run

TITLES = ["  Spaced   out ", "Fine", "Two  spaces"]


@pytest.fixture
def shop(engine, tmp_path, monkeypatch):
    """Module shop_tools made by create-module from the template, enabled, with three items; writes switched on."""
    monkeypatch.setenv("MODULES_DIR", str(tmp_path / "modules"))
    forget_discovery()
    assert main(["create-module", "shop_tools", "Shop tools"]) == 0
    assert main(["modules", "enable", "shop_tools"]) == 0
    with engine.begin() as conn:
        for title in TITLES:
            conn.execute(text("INSERT INTO shop_tools_items (title) VALUES (:t)"), {"t": title})
    monkeypatch.setenv("MODULES__SHOP_TOOLS__READ_ONLY", "false")
    monkeypatch.setenv("MODULES__SHOP_TOOLS__DRY_RUN", "false")
    yield engine
    forget_discovery()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        drop_roles_of_schema(engine, db, schema)


def titles(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT title FROM shop_tools_items ORDER BY id")).scalars())


def job_run(capsys, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["job", "run", "shop_tools.tidy", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_template_job_previews_then_applies_from_the_command_line(shop, capsys):
    code, preview = job_run(capsys)
    assert code == 0 and preview["dry_run"] is True and preview["run_id"] is None
    assert (preview["items"], preview["to_tidy"], preview["tidied"]) == (3, 2, 2)
    assert titles(shop) == TITLES and list_runs(shop) == []  # a preview writes nothing

    code, applied = job_run(capsys, "--apply")
    assert code == 0 and applied["dry_run"] is False and applied["tidied"] == 2 and applied["errors"] == []
    assert titles(shop) == ["Spaced out", "Fine", "Two spaces"]
    run = list_runs(shop)[0]
    assert run["run_id"] == applied["run_id"] and run["kind"] == "shop_tools.tidy" and run["status"] == "succeeded"
    assert run["stats"] == {"items": 3, "to_tidy": 2, "tidied": 2}

    capsys.readouterr()
    assert main(["job", "list", "--json"]) == 0
    listed = {j["kind"]: j for j in json.loads(capsys.readouterr().out)["jobs"]}
    assert listed["shop_tools.tidy"]["module"] == "shop_tools" and "crm-sync" in listed


def test_module_job_refusals_are_exit_2_and_write_nothing(shop, capsys, monkeypatch):
    monkeypatch.setenv("MODULES__SHOP_TOOLS__READ_ONLY", "true")
    code, refused = job_run(capsys, "--apply")
    assert code == 2 and "read-only" in refused["error"]
    monkeypatch.setenv("MODULES__SHOP_TOOLS__READ_ONLY", "false")
    monkeypatch.setenv("HUB_CLI_ROLE", "viewer")
    code, refused = job_run(capsys, "--apply")
    assert code == 2 and "needs the 'operator' role" in refused["error"]
    monkeypatch.setenv("HUB_CLI_ROLE", "admin")
    assert main(["modules", "disable", "shop_tools"]) == 0
    code, refused = job_run(capsys)
    assert code == 2 and "module shop_tools is not enabled" in refused["error"]
    capsys.readouterr()
    assert main(["job", "run", "shop_tools.nope", "--json"]) == 2
    assert "there is no module job 'shop_tools.nope'" in json.loads(capsys.readouterr().out)["error"]
    assert titles(shop) == TITLES and list_runs(shop) == []


def test_module_dry_run_setting_turns_the_apply_into_a_check(shop, capsys, monkeypatch):
    monkeypatch.setenv("MODULES__SHOP_TOOLS__DRY_RUN", "true")
    code, applied = job_run(capsys, "--apply")
    assert code == 0 and applied["module_dry_run"] is True and applied["tidied"] == 0
    assert titles(shop) == TITLES


def test_module_page_has_a_job_panel_that_previews_and_applies(shop):
    """The module's page (AppTest) shows its job; Preview shows the counts, Apply tidies and names the run."""
    from streamlit.testing.v1 import AppTest

    from tests.apptest import texts
    from tests.test_module_pages import NAV_SCRIPT

    at = AppTest.from_string(NAV_SCRIPT, default_timeout=60)
    at.session_state["render"] = ("shop_tools", "page.py")
    at.run()
    assert not at.exception and "Job: Tidy item titles" in [e.label for e in at.expander]
    at.button(key="job-preview-shop_tools.tidy").click().run()
    assert "**Preview (nothing written)** — items: 3, to tidy: 2" in texts(at)
    assert titles(shop) == TITLES
    at.button(key="job-apply-shop_tools.tidy").click().run()
    assert not at.exception and "tidied: 2" in texts(at) and "**Applied as run" in texts(at)
    assert titles(shop) == ["Spaced out", "Fine", "Two spaces"]


def test_undo_of_the_template_job_restores_the_titles(shop, capsys):
    """The job's writes are in the audit log with its run: `manage.py undo RUN_ID` puts the old titles back."""
    code, applied = job_run(capsys, "--apply")
    assert code == 0 and titles(shop) == ["Spaced out", "Fine", "Two spaces"]
    capsys.readouterr()
    assert main(["undo", str(applied["run_id"]), "--json"]) == 0
    undone = json.loads(capsys.readouterr().out)
    assert undone["fields_restored"] == 2
    assert titles(shop) == TITLES
    redo = undo_run(shop, undone["run_id"], user="cli", role="admin")  # an undo of the undo writes them again
    assert redo["fields_restored"] == 2 and titles(shop) == ["Spaced out", "Fine", "Two spaces"]


def test_undo_of_the_template_job_refuses_a_later_change(shop, capsys):
    code, applied = job_run(capsys, "--apply")
    with shop.begin() as conn:
        conn.execute(text("UPDATE shop_tools_items SET title = 'edited' WHERE id = 1"))
    with pytest.raises(UndoRefused, match=r"shop_tools_items#1\.title"):
        undo_run(shop, applied["run_id"], user="cli", role="admin")
    assert titles(shop) == ["edited", "Fine", "Two spaces"]


def test_a_module_session_still_cannot_write_core_tables(shop):
    """Logging its changes gives a module no write to core tables, nor to the audit log beyond its own entries."""
    with pytest.raises(ConfinementError):
        with module_connection("shop_tools", shop) as conn:
            conn.execute(text("INSERT INTO customers (name) VALUES ('x')"))
    with pytest.raises(ConfinementError):
        with module_connection("shop_tools", shop) as conn:
            conn.execute(text("DELETE FROM changes"))
    with shop.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 0


def test_an_entry_of_a_module_run_naming_a_core_table_is_refused(shop, capsys):
    """PostgreSQL: hub_log_change refuses a table the module's role does not own. Both databases: undo refuses
    a module run whose audit entries name a table outside the module's prefix."""
    run = start_run(shop, "shop_tools.tidy", user="cli")
    with shop.begin() as conn:
        customer = conn.execute(text("INSERT INTO customers (name) VALUES ('Kept') RETURNING id")).scalar_one()
    if shop.dialect.name == "postgresql":
        with pytest.raises(ConfinementError, match="may log changes only of tables it owns"):
            with module_connection("shop_tools", shop) as conn:
                conn.execute(text("SELECT hub_log_change(:r, 'customers', :c, 'update', 'name', '\"Gone\"', "
                                  "'\"Kept\"', 'cli')"), {"r": run.id, "c": customer})
        with pytest.raises(ConfinementError, match="may log changes only of tables it owns"):
            with module_connection("shop_tools", shop) as conn:
                conn.execute(text("SELECT hub_log_change(:r, 'changes', 1, 'update', 'field', NULL, NULL, 'cli')"),
                             {"r": run.id})
    with module_connection("shop_tools", shop) as conn:  # SQLite lets the module add any entry; undo judges it
        if shop.dialect.name == "sqlite":
            conn.execute(text("INSERT INTO changes (run_id, table_name, row_id, action, field, old_value, new_value, "
                              "changed_by) VALUES (:r, 'customers', :c, 'update', 'name', '\"Gone\"', '\"Kept\"', "
                              "'cli')"), {"r": run.id, "c": customer})
        audited_update(conn, "shop_tools", "items", 1, {"title": "tidied"}, run_id=run.id, user="cli")
    if shop.dialect.name == "postgresql":  # the function refused it: put the entry there as a broken log would
        with shop.begin() as conn:
            conn.execute(text("INSERT INTO changes (run_id, table_name, row_id, action, field, old_value, new_value, "
                              "changed_by) VALUES (:r, 'customers', :c, 'update', 'name', '\"Gone\"', '\"Kept\"', "
                              "'cli')"), {"r": run.id, "c": customer})
    run.finish({})
    with pytest.raises(UndoRefused, match="its audit entries name customers"):
        undo_run(shop, run.id, user="cli", role="admin")
    with shop.connect() as conn:
        assert conn.execute(text("SELECT name FROM customers")).scalar_one() == "Kept"
    assert titles(shop)[0] == "tidied"
