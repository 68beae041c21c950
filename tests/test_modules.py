"""The module registry against the fixture modules in tests/fixtures/modules, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from sqlalchemy import inspect, text

from lib.cli import main
from lib.errors import InputError
from lib.migrations import MigrationError, MigrationRefused
from lib.modules import (
    check_health,
    disable_module,
    enable_module,
    forget_discovery,
    get_module_config,
    load_registry,
    migrate_enabled_modules,
    module_config,
    module_migration_status,
    module_report,
    record_new_modules,
    removal_plan,
    remove_module_data,
)
from lib.roles import Actor
from tests.conftest import ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "modules"

ADMIN = Actor("t", "admin")


@pytest.fixture
def modules_dir(tmp_path, monkeypatch):
    """A copy of the fixture modules as MODULES_DIR."""
    folder = tmp_path / "modules"
    shutil.copytree(FIXTURES, folder)
    monkeypatch.setenv("MODULES_DIR", str(folder))
    forget_discovery()
    yield folder
    forget_discovery()


def statuses(engine) -> dict[str, tuple[str, str | None]]:
    return {r["name"]: (r["status"], r["error"]) for r in module_report(engine)}


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_every_fixture_gets_its_documented_status(engine, modules_dir):
    """Broken manifests, cycles, missing deps and an old Hub make only those modules unavailable."""
    s = statuses(engine)
    assert s["good"] == ("disabled", None)
    assert s["broken_json"][0] == "unavailable" and "broken_json/module.json: not valid JSON at line 3" in s["broken_json"][1]
    assert s["missing_field"][0] == "unavailable"
    assert 'missing_field/module.json: key "version": required but missing' in s["missing_field"][1]
    assert 'unknown key "dependecies" ignored (did you mean "dependencies"?)' in s["missing_field"][1]
    assert s["cycle_a"] == ("unavailable", "dependency cycle: cycle_a → cycle_b → cycle_a")
    assert s["cycle_b"][1].startswith("dependency cycle")
    assert s["after_cycle"] == ("unavailable", "depends on cycle_a, which is unavailable")
    assert s["missing_dep"][0] == "unavailable" and "depends on not_there, which is not installed" in s["missing_dep"][1]
    assert s["incompatible"] == ("unavailable", "needs BMC Hub >=99.0, this is 1.0.0")
    assert s["needs_good"] == ("unavailable", "depends on good, which is disabled")
    for name in ("import_error", "render_error", "hanging_health", "half_migration", "intruder"):
        assert s[name] == ("disabled", None)
    warnings = {r["name"]: r["warnings"] for r in module_report(engine)}
    assert any('unknown key "colour"' in w for w in warnings["needs_good"])


def test_enable_applies_migrations_and_unblocks_dependants(engine, modules_dir):
    """Enabling runs pending migrations first; dependants become available; versions are checked."""
    applied = enable_module(engine, "good", ADMIN)
    assert [f.filename for f in applied] == ["001_init.sql"]
    assert "good_items" in tables(engine)
    s = statuses(engine)
    assert s["good"] == ("enabled", None)
    assert s["needs_good"] == ("disabled", None)
    assert s["wants_new_good"] == ("unavailable", "needs good>=2.0, found good 1.2.0")
    row = next(r for r in module_report(engine) if r["name"] == "good")
    assert row["installed_version"] == "1.2.0" and row["changed_by"] == "t"
    assert row["dependants"] == ["needs_good", "wants_new_good"]
    assert enable_module(engine, "good", ADMIN) == []  # idempotent: retrying is always safe


def test_disabling_a_dependency_takes_dependants_down_without_changing_their_state(engine, modules_dir):
    enable_module(engine, "good", ADMIN)
    enable_module(engine, "needs_good", ADMIN)
    assert disable_module(engine, "good", ADMIN) == ["needs_good"]
    reg = load_registry(engine)
    assert reg.get("needs_good").enabled and reg.get("needs_good").status == "unavailable"
    enable_module(engine, "good", ADMIN)
    assert load_registry(engine).get("needs_good").status == "enabled"


def test_unavailable_or_unknown_modules_cannot_be_enabled(engine, modules_dir):
    with pytest.raises(InputError, match="depends on good, which is disabled"):
        enable_module(engine, "needs_good", ADMIN)
    with pytest.raises(InputError, match="dependency cycle"):
        enable_module(engine, "cycle_a", ADMIN)
    with pytest.raises(InputError, match="no module named 'nope'"):
        enable_module(engine, "nope", ADMIN)


def test_failing_migration_rolls_back_and_module_stays_disabled(engine, modules_dir):
    """Half-way failure: no table left, the module disabled with the error, a fixed file lets a retry through."""
    with pytest.raises(MigrationError, match="half_migration/001_init.sql failed at statement 3"):
        enable_module(engine, "half_migration", ADMIN)
    assert "half_migration_a" not in tables(engine)
    info = load_registry(engine).get("half_migration")
    assert not info.enabled and info.status == "failed" and "half_migration_missing_table" in info.error
    (modules_dir / "half_migration" / "migrations" / "001_init.sql").write_text(
        "CREATE TABLE half_migration_a (id INTEGER PRIMARY KEY);\n", encoding="utf-8")
    enable_module(engine, "half_migration", ADMIN)
    info = load_registry(engine).get("half_migration")
    assert info.enabled and info.status == "enabled" and info.error is None


def test_migration_touching_another_modules_table_is_refused_before_running(engine, modules_dir):
    enable_module(engine, "good", ADMIN)
    with pytest.raises(MigrationRefused, match="'good_items' is a table of module good"):
        enable_module(engine, "intruder", ADMIN)
    assert "intruder_notes" not in tables(engine)  # refused before the first statement
    assert "stolen" not in {c["name"] for c in inspect(engine).get_columns("good_items")}
    assert load_registry(engine).get("intruder").status == "failed"


def test_manifest_enabled_is_only_the_default_on_first_discovery(engine, modules_dir):
    manifest = modules_dir / "good" / "module.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "enabled": True}))
    forget_discovery()
    assert not load_registry(engine).get("good").enabled  # a read writes nothing, not even a first sighting
    assert "good_items" not in tables(engine)
    assert "good" in record_new_modules(engine)  # app start, `migrate` or `modules enable` record it
    reg = load_registry(engine)
    assert reg.get("good").enabled and "good_items" in tables(engine)
    disable_module(engine, "good", ADMIN)
    time.sleep(0.01)
    manifest.write_text(json.dumps({**data, "enabled": True, "description": "edited"}))
    assert not load_registry(engine).get("good").enabled


def test_module_json_changes_are_picked_up_without_restart(engine, modules_dir):
    """MODULES_AUTO_RELOAD (default on): the next registry load sees an edited module.json."""
    assert load_registry(engine).get("incompatible").status == "unavailable"
    manifest = modules_dir / "incompatible" / "module.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "hub_version": ">=1.0,<2"}) + "\n")
    assert load_registry(engine).get("incompatible").status == "disabled"


def test_auto_reload_off_scans_once(engine, modules_dir, monkeypatch):
    monkeypatch.setenv("MODULES_AUTO_RELOAD", "false")
    assert load_registry(engine).get("incompatible").status == "unavailable"
    manifest = modules_dir / "incompatible" / "module.json"
    manifest.write_text(manifest.read_text().replace(">=99.0", ">=1.0"))
    assert load_registry(engine).get("incompatible").status == "unavailable"
    forget_discovery()
    assert load_registry(engine).get("incompatible").status == "disabled"


def test_modules_enabled_false_turns_the_system_off(engine, modules_dir, monkeypatch):
    monkeypatch.setenv("MODULES_ENABLED", "false")
    reg = load_registry(engine)
    assert not reg.system_enabled and reg.modules == {}
    with pytest.raises(InputError, match="MODULES_ENABLED=false"):
        enable_module(engine, "good", ADMIN)


def test_config_defaults_env_overrides_and_masking(engine, modules_dir, monkeypatch):
    assert get_module_config("good", "READ_ONLY", False) is True
    assert get_module_config("good", "MISSING", "fallback") == "fallback"
    monkeypatch.setenv("MODULES__GOOD__READ_ONLY", "false")
    monkeypatch.setenv("MODULES__GOOD__LIMIT", "25")
    monkeypatch.setenv("MODULES__GOOD__NOTE", "plain text")
    monkeypatch.setenv("MODULES__GOOD__DB_PASSWORD", "hunter2")
    assert get_module_config("good", "READ_ONLY", True) is False
    assert get_module_config("good", "LIMIT") == 25
    assert get_module_config("good", "NOTE") == "plain text"
    shown = module_config("good")
    assert shown["API_TOKEN"]["value"] == "••••••" and shown["DB_PASSWORD"]["value"] == "••••••"
    assert (shown["LIMIT"]["value"], shown["LIMIT"]["source"], shown["LIMIT"]["locked"]) == (
        25, "MODULES__GOOD__LIMIT", True)
    assert (shown["DRY_RUN"]["value"], shown["DRY_RUN"]["source"], shown["DRY_RUN"]["locked"]) == (
        True, "module.json", False)
    monkeypatch.setenv("MODULES__GOOD__CRM_DSN", "postgresql://x:y@h/db")
    monkeypatch.setenv("MODULES__GOOD__SMTP_PASSWD", "p")
    monkeypatch.setenv("MODULES__GOOD__GOOGLE_CREDENTIALS", "{}")
    shown = module_config("good")
    assert {shown[k]["value"] for k in ("CRM_DSN", "SMTP_PASSWD", "GOOGLE_CREDENTIALS")} == {"••••••"}


def test_health_checks_that_raise_or_hang_report_unhealthy_within_the_timeout(engine, modules_dir):
    for name in ("hanging_health", "raising_health", "good"):
        enable_module(engine, name, ADMIN)
    reg = load_registry(engine)
    started = time.monotonic()
    hanging = check_health(engine, reg.get("hanging_health"), max_age=0)
    assert hanging.healthy is False and ("timed out after 1 s" in hanging.message or "still running" in hanging.message)
    again = check_health(engine, reg.get("hanging_health"), max_age=0)
    assert again.healthy is False and time.monotonic() - started < 5
    raising = check_health(engine, reg.get("raising_health"))
    assert raising.healthy is False and "ValueError: database unreachable" in raising.message
    assert check_health(engine, reg.get("good")).healthy is True
    assert check_health(engine, reg.get("render_error")).healthy is None  # disabled: not checked


def test_remove_data_drops_only_the_modules_own_tables(engine, modules_dir):
    enable_module(engine, "good", ADMIN)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE goodies (id INTEGER)"))  # not good_… : not good's
    with pytest.raises(InputError, match="disable it before removing"):
        removal_plan(engine, "good")
    disable_module(engine, "good", ADMIN)
    plan = removal_plan(engine, "good")
    assert plan.tables == ["good_items"] and plan.migration_rows == 1
    remove_module_data(engine, "good", plan, ADMIN)
    assert "good_items" not in tables(engine) and {"goodies", "customers", "module_state"} <= tables(engine)
    assert removal_plan(engine, "good").empty
    assert load_registry(engine).get("good").state.installed_version is None
    enable_module(engine, "good", ADMIN)  # a clean reinstall
    assert "good_items" in tables(engine)


def test_remove_data_refuses_when_the_tables_changed_since_the_preview(engine, modules_dir):
    enable_module(engine, "good", ADMIN)
    disable_module(engine, "good", ADMIN)
    plan = removal_plan(engine, "good")
    with engine.begin() as conn:  # named like the module's, but not made by its migrations: never its to drop
        conn.execute(text("CREATE TABLE good_extra (id INTEGER)"))
    assert removal_plan(engine, "good") == plan
    (modules_dir / "good" / "migrations" / "002_more.sql").write_text("CREATE TABLE good_more (id INTEGER);")
    enable_module(engine, "good", ADMIN)
    disable_module(engine, "good", ADMIN)
    with pytest.raises(InputError, match="changed since they were shown"):
        remove_module_data(engine, "good", plan, ADMIN)
    assert {"good_items", "good_more"} <= tables(engine)
    remove_module_data(engine, "good", removal_plan(engine, "good"), ADMIN)
    assert not {"good_items", "good_more"} & tables(engine) and "good_extra" in tables(engine)


def test_migrate_enabled_modules_and_status_for_manage_migrate(engine, modules_dir):
    enable_module(engine, "good", ADMIN)
    (modules_dir / "good" / "migrations" / "002_more.sql").write_text("ALTER TABLE good_items ADD COLUMN note TEXT;")
    assert [s.state for s in module_migration_status(engine)] == ["applied", "pending"]
    assert [f.filename for f in migrate_enabled_modules(engine)] == ["002_more.sql"]
    assert [s.state for s in module_migration_status(engine)] == ["applied", "applied"]
    assert migrate_enabled_modules(engine) == []


def test_cli_list_enable_disable_health_json(engine, modules_dir, capsys):
    assert main(["modules", "enable", "good", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["applied_migrations"] == ["001_init.sql"]
    assert main(["modules", "list", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["modules"]}
    assert {"name", "version", "enabled", "status", "error"} <= set(listed["good"])
    assert listed["good"]["enabled"] is True and listed["cycle_a"]["status"] == "unavailable"
    assert main(["modules", "enable", "half_migration"]) == 1
    assert "half_migration/001_init.sql failed" in capsys.readouterr().err
    assert main(["modules", "enable", "nope"]) == 2
    capsys.readouterr()
    assert main(["modules", "health", "good", "--json"]) == 0
    health = json.loads(capsys.readouterr().out)["modules"]
    assert health == [{"name": "good", "healthy": True, "message": "good_items readable", "status": "enabled",
                       "enabled": True, "duration_ms": health[0]["duration_ms"]}]
    assert main(["modules", "enable", "raising_health"]) == 0
    assert main(["modules", "health", "--json"]) == 1  # an enabled module is unhealthy
    capsys.readouterr()
    assert main(["modules", "disable", "good", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"name": "good", "enabled": False, "unavailable_dependants": []}
    assert main(["modules", "remove-data", "good", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tables"] == ["good_items"]
    assert "good_items" in tables(engine)  # preview only
    assert main(["modules", "remove-data", "good", "--apply", "--json"]) == 0
    assert "good_items" not in tables(engine)
