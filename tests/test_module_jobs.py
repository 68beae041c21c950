"""A module adds a job without a core file changed: the template's example job, scaffolded by create-module into a
temporary MODULES_DIR, runs from `manage.py job run MODULE.JOB` with the runner's guarantees and exit codes."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from lib.cli import main
from lib.module_sandbox import drop_roles_of_schema
from lib.modules import forget_discovery
from lib.runs import list_runs

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
