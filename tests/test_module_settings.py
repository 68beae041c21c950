"""Module settings: declared in module.json, edited on the Modules page or with `modules set`, validated,
audited and undoable; the environment wins and shows locked; secrets are write-only. Both databases."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from lib.cli import main
from lib.errors import InputError, NotAllowed
from lib.modules import (
    forget_discovery,
    get_module_config,
    module_config,
    save_module_settings,
    set_module_setting,
)
from lib.roles import Actor
from lib.runs import undo_run
from tests.apptest import texts
from tests.conftest import ROOT

ADMIN = Actor("admin@bmc.dk", "admin")
SETTINGS = [
    {"key": "LOOKUPS", "type": "int", "default": 50, "min": 1, "max": 500, "description": "per run"},
    {"key": "RATIO", "type": "float", "default": 0.5, "min": 0, "max": 1},
    {"key": "MODE", "type": "choice", "default": "all", "choices": ["all", "ceased"]},
    {"key": "GREETING", "type": "str", "default": "hej"},
    {"key": "API_TOKEN", "type": "secret", "description": "write-only"},
]


@pytest.fixture
def module(tmp_path, monkeypatch):
    root = tmp_path / "modules"
    (root / "tuned").mkdir(parents=True)
    (root / "tuned" / "module.json").write_text(json.dumps({
        "name": "tuned", "version": "1.0.0", "description": "settings test", "settings": SETTINGS}))
    monkeypatch.setenv("MODULES_DIR", str(root))
    forget_discovery()
    yield "tuned"
    forget_discovery()


def test_defaults_then_saved_values_then_undo_restores(engine, module):
    assert get_module_config(module, "READ_ONLY") is True and get_module_config(module, "DRY_RUN") is True
    assert get_module_config(module, "LOOKUPS") == 50
    result = save_module_settings(engine, module, {"LOOKUPS": "120", "READ_ONLY": False, "MODE": "ceased"}, ADMIN)
    assert sorted(result["changed"]) == ["LOOKUPS", "MODE", "READ_ONLY"]
    assert get_module_config(module, "LOOKUPS") == 120 and get_module_config(module, "READ_ONLY") is False
    second = set_module_setting(engine, module, "LOOKUPS", 200, ADMIN)
    assert get_module_config(module, "LOOKUPS") == 200
    assert set_module_setting(engine, module, "LOOKUPS", 200, ADMIN)["changed"] is False  # no run for no change
    undo_run(engine, second["run_id"], user=ADMIN.email)
    assert get_module_config(module, "LOOKUPS") == 120
    undo_run(engine, result["run_id"], user=ADMIN.email, force=True)  # run 2 and its undo touched LOOKUPS
    assert get_module_config(module, "LOOKUPS") == 50 and get_module_config(module, "READ_ONLY") is True


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("LOOKUPS", "0", "outside 1"), ("LOOKUPS", "x", "whole number"), ("LOOKUPS", 2.5, "whole number"),
    ("RATIO", "1.5", "outside"), ("MODE", "some", "one of all, ceased"), ("READ_ONLY", "maybe", "true or false"),
    ("NOPE", 1, "has no setting 'NOPE'"), ("GREETING", "x" * 2001, "at most 2000"),
])
def test_invalid_values_are_refused_and_nothing_is_saved(engine, module, key, value, expected):
    with pytest.raises(InputError, match=expected):
        save_module_settings(engine, module, {"MODE": "ceased", key: value}, ADMIN)
    assert get_module_config(module, "MODE") == "all"  # all or nothing


def test_environment_wins_and_locks(engine, module, monkeypatch):
    monkeypatch.setenv("MODULES__TUNED__DRY_RUN", "false")
    assert get_module_config(module, "DRY_RUN") is False
    shown = module_config(module, engine=engine)["DRY_RUN"]
    assert shown["locked"] and shown["source"] == "MODULES__TUNED__DRY_RUN"
    with pytest.raises(InputError, match="locked: MODULES__TUNED__DRY_RUN"):
        set_module_setting(engine, module, "DRY_RUN", True, ADMIN)


def test_secrets_are_write_only(engine, module, capsys):
    result = set_module_setting(engine, module, "API_TOKEN", "tok-123456", ADMIN)
    assert get_module_config(module, "API_TOKEN") == "tok-123456"  # the module itself reads it
    assert module_config(module, engine=engine)["API_TOKEN"]["value"] == "••••••"
    assert main(["modules", "settings", module, "--json"]) == 0
    assert main(["runs", "--kind", "module-settings", "--json"]) == 0 and result["run_id"]
    assert "tok-123456" not in capsys.readouterr().out
    with engine.connect() as conn:  # never in the audit log, which the Runs page shows
        logged = conn.execute(text("SELECT count(*) FROM changes WHERE new_value LIKE '%tok-123456%' "
                                   "OR old_value LIKE '%tok-123456%'")).scalar()
    assert logged == 0


def test_only_admins_change_settings(engine, module, monkeypatch, capsys):
    with pytest.raises(NotAllowed):
        set_module_setting(engine, module, "LOOKUPS", 10, Actor("o@bmc.dk", "operator"))
    monkeypatch.setenv("HUB_CLI_ROLE", "viewer")
    assert main(["modules", "set", module, "LOOKUPS", "10"]) == 2
    assert "needs the 'admin' role" in capsys.readouterr().err
    monkeypatch.setenv("HUB_CLI_ROLE", "admin")
    assert main(["modules", "set", module, "LOOKUPS", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert get_module_config(module, "LOOKUPS") == 10


def test_modules_page_edits_settings_with_validation_and_shows_locks(engine, module, monkeypatch):
    monkeypatch.setenv("MODULES__TUNED__GREETING", "hallo")
    at = AppTest.from_file(str(ROOT / "app_pages" / "modules.py"), default_timeout=60).run()
    assert not at.exception
    assert at.text_input(key="modules_setting_tuned_GREETING").disabled
    assert "GREETING is locked by `MODULES__TUNED__GREETING`" in texts(at)
    at.toggle(key="modules_setting_tuned_READ_ONLY").set_value(False)
    at.number_input(key="modules_setting_tuned_LOOKUPS").set_value(75)
    at.text_input(key="modules_setting_tuned_API_TOKEN").input("s3cr3t-value")
    at.button(key="modules_settings_save_tuned").click().run()
    assert "Saved" in texts(at), texts(at)
    assert get_module_config(module, "READ_ONLY") is False and get_module_config(module, "LOOKUPS") == 75
    assert get_module_config(module, "API_TOKEN") == "s3cr3t-value"
    assert "s3cr3t-value" not in texts(at)
    assert at.text_input(key="modules_setting_tuned_API_TOKEN").value == ""
