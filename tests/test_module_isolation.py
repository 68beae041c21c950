"""A hostile module cannot harm the core: the database engine refuses, on SQLite and on PostgreSQL.

Each statement is run as a module's migration twice: through `modules enable` (text check first, then the
engine) and straight through the confined runner (the engine alone). Either way the core is unchanged and the
module stays disabled.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from lib.cli import main
from lib.errors import InputError, NotAllowed
from lib.migrations import MigrationError, MigrationRefused
from lib.module_migrations import migrate_module
from lib.module_sandbox import ConfinementError, Sandbox, drop_roles_of_schema
from lib.modules import (
    disable_module,
    enable_module,
    forget_discovery,
    load_registry,
    module_connection,
    removal_plan,
    remove_module_data,
)
from lib.roles import Actor

ADMIN = Actor("admin@bmc.dk", "admin")
BOTH, PG, SQLITE = ("sqlite", "postgresql"), ("postgresql",), ("sqlite",)
PG_TRIGGER = ("CREATE FUNCTION evil_f() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN DELETE FROM changes; "
              "RETURN NULL; END$$;\nCREATE TRIGGER evil_t AFTER INSERT ON customers FOR EACH ROW EXECUTE FUNCTION evil_f()")
HOSTILE: list[tuple[str, tuple[str, ...], str]] = [
    ("update_alias", BOTH, "UPDATE customers AS c SET name='pwned'"),
    ("cte_update", BOTH, "WITH x AS (SELECT '--') UPDATE customers SET name='pwned'"),
    ("quoted_no_space", BOTH, "UPDATE \"customers\"SET name='pwned'"),
    ("delete_quoted", BOTH, "DELETE FROM\"customers\""),
    ("drop_core", BOTH, "DROP TABLE\"subscriptions\""),
    ("alter_core", BOTH, "ALTER TABLE\"customers\" DROP COLUMN email"),
    ("sqlite_trigger_on_core", SQLITE, "CREATE TRIGGER evil_t AFTER INSERT ON customers BEGIN DELETE FROM changes; END"),
    ("sqlite_temp_trigger", SQLITE, "CREATE TEMP TRIGGER evil_t AFTER INSERT ON main.customers BEGIN SELECT 1; END"),
    ("pg_trigger_on_core", PG, PG_TRIGGER),
    ("shadow_view", BOTH, "CREATE TEMP VIEW customers AS SELECT 1 AS id"),
    ("shadow_function", PG, "CREATE FUNCTION lower(varchar) RETURNS text LANGUAGE sql AS 'SELECT ''x''::text'"),
    ("attach", SQLITE, "ATTACH DATABASE ':memory:' AS evil"),
    ("writable_schema", SQLITE, "PRAGMA writable_schema=1"),
    ("foreign_keys_off", SQLITE, "PRAGMA foreign_keys=OFF"),
    ("sqlite_sequence", SQLITE, "UPDATE sqlite_sequence SET seq = 0 WHERE name = 'customers'"),
    ("undeclared_read", BOTH, "CREATE TABLE evil_copy AS SELECT * FROM changes"),
    ("update_star", PG, "UPDATE customers * SET name='pwned'"),
    ("merge", PG, "MERGE INTO customers c USING (SELECT 1 AS id) s ON c.id = s.id "
                  "WHEN MATCHED THEN UPDATE SET name = 'pwned'"),
    ("alter_sequence", PG, "ALTER SEQUENCE customers_id_seq RESTART WITH 1"),
    ("setval", PG, "SELECT setval('customers_id_seq', 1)"),
    ("index_on_core", PG, "CREATE UNIQUE INDEX ON customers (zip)"),
    ("rename_core_index", PG, "ALTER INDEX customers_name RENAME TO x_idx"),
    ("inherits", PG, "CREATE TABLE evil_fake () INHERITS (customers);\nINSERT INTO evil_fake (name) VALUES ('fake')"),
    ("multi_statement", PG, "SELECT E'\\''; DELETE FROM changes; DELETE FROM customers; SELECT '--'"),
    ("reset_role", PG, "RESET ROLE;\nDELETE FROM customers"),
    ("set_config_role", PG, "SELECT set_config('role', 'none', false);\nDELETE FROM customers"),
    ("session_authorization", PG, "SET SESSION AUTHORIZATION postgres;\nDELETE FROM customers"),
    ("replace_runner", PG, "CREATE OR REPLACE FUNCTION pg_temp.hub_module_exec(statement text) RETURNS void "
                           "LANGUAGE plpgsql AS $x$ BEGIN EXECUTE statement; END $x$;\nDELETE FROM customers"),
    ("unprefixed_table", BOTH, "CREATE TABLE notes (id INTEGER)"),
    ("commit_midway", BOTH, "COMMIT;\nDELETE FROM customers"),
    ("search_path", PG, "SELECT set_config('search_path', 'pg_temp', false)"),
]


@pytest.fixture(autouse=True)
def _drop_roles(engine):
    """Module roles are cluster-wide: drop the ones made for this test's schema."""
    yield
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        drop_roles_of_schema(engine, db, schema)


@pytest.fixture
def mods(tmp_path, monkeypatch):
    folder = tmp_path / "modules"
    folder.mkdir()
    monkeypatch.setenv("MODULES_DIR", str(folder))
    forget_discovery()
    yield folder
    forget_discovery()


def make_module(root: Path, name: str, *migrations: str, reads: list[str] | None = None, **manifest) -> Path:
    folder = root / name
    (folder / "migrations").mkdir(parents=True)
    data = {"name": name, "version": "1.0.0", "description": f"{name} (test)", **manifest}
    if reads is not None:
        data["reads"] = reads
    (folder / "module.json").write_text(json.dumps(data))
    for number, sql in enumerate(migrations, start=1):
        (folder / "migrations" / f"{number:03d}_m.sql").write_text(sql)
    forget_discovery()
    return folder


def seed(engine) -> None:
    with engine.begin() as conn:
        for name in ("Alfa ApS", "Beta A/S"):
            conn.execute(text("INSERT INTO customers (name, email, zip) VALUES (:n, 'x@y.dk', '8000')"), {"n": name})
        conn.execute(text("INSERT INTO changes (table_name, row_id, action, field, changed_by, at) "
                          "VALUES ('customers', 1, 'insert', '*', 't', CURRENT_TIMESTAMP)"))


CORE = ("customers", "subscriptions", "changes", "runs", "module_migrations")  # module_state shows the error


def snapshot(engine) -> dict:
    """Rows, columns, indexes, triggers and sequences of the core tables."""
    insp = inspect(engine)
    out: dict = {"tables": sorted(t for t in insp.get_table_names() if not t.startswith("evil")),
                 "views": sorted(insp.get_view_names())}
    with engine.connect() as conn:
        for table in CORE:
            if table == "module_migrations":
                out[table] = conn.execute(text("SELECT count(*) FROM module_migrations WHERE module <> 'evil'")).scalar()
                continue
            out[table] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]
            out[f"{table}.columns"] = [c["name"] for c in insp.get_columns(table)]
        if engine.dialect.name == "postgresql":
            out["sequences"] = [tuple(r) for r in conn.execute(text(
                "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = current_schema() "
                "AND sequencename NOT LIKE 'module_migrations%' ORDER BY 1"))]
            out["indexes"] = [tuple(r) for r in conn.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() ORDER BY 1"))]
            out["triggers"] = conn.execute(text("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal")).scalar()
            out["functions"] = sorted(conn.execute(text(
                "SELECT proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace")).scalars())
        else:
            out["sequences"] = [tuple(r) for r in conn.execute(text(
                "SELECT * FROM sqlite_sequence WHERE name <> 'module_migrations' ORDER BY 1"))]
            out["indexes"] = [tuple(r) for r in conn.execute(text(
                "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'index' ORDER BY 1"))]
            out["triggers"] = sorted(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
                                     .scalars())
    return out


@pytest.mark.parametrize(("db_url", "case"), [pytest.param(db, case, id=f"{db}-{case}")
                                               for case, where, _sql in HOSTILE for db in where], indirect=["db_url"])
def test_hostile_migration_is_refused_by_the_engine_and_the_core_is_unchanged(engine, mods, case):
    _, where, sql = next(h for h in HOSTILE if h[0] == case)
    seed(engine)
    before = snapshot(engine)
    folder = make_module(mods, "evil", f"CREATE TABLE evil_items (id INTEGER);\n{sql};\n")
    # the engine alone (the text check is not in this path)
    with pytest.raises(MigrationRefused) as refused:
        migrate_module(engine, folder / "migrations", Sandbox("evil", "evil_"))
    message = str(refused.value)
    assert "migration evil/001_m.sql failed at statement" in message
    assert "refused by" in message or "may only" in message or "changed search_path" in message
    assert snapshot(engine) == before
    assert "evil_items" not in inspect(engine).get_table_names()
    # and the way a user meets it: `modules enable` refuses, the module stays disabled, exit 2 from the CLI
    with pytest.raises(MigrationRefused):
        enable_module(engine, "evil", ADMIN)
    assert not load_registry(engine).get("evil").enabled
    if case == "update_alias":  # the command line says the same, exit 2 (once is enough)
        assert main(["modules", "enable", "evil"]) == 2
    assert snapshot(engine) == before


def test_declared_read_works_and_undeclared_read_is_refused(engine, mods):
    seed(engine)
    make_module(mods, "reader", "CREATE TABLE reader_names AS SELECT id, name FROM customers",
                reads=["customers"])
    enable_module(engine, "reader", ADMIN)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM reader_names")).scalar() == 2
    with module_connection("reader", engine) as conn:  # the module's code: same confinement
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 2
        conn.execute(text("INSERT INTO reader_names (id, name) VALUES (99, 'own table')"))
    with pytest.raises(ConfinementError), module_connection("reader", engine) as conn:
        conn.execute(text("SELECT count(*) FROM changes"))
    with pytest.raises(ConfinementError), module_connection("reader", engine) as conn:
        conn.execute(text("UPDATE customers SET name = 'pwned'"))
    with engine.connect() as conn:
        assert "pwned" not in conn.execute(text("SELECT name FROM customers")).scalars().all()
        assert conn.execute(text("SELECT count(*) FROM reader_names")).scalar() == 3


def test_a_module_that_leaves_its_role_at_run_time_is_rolled_back(engine, mods):
    if engine.dialect.name != "postgresql":
        pytest.skip("roles are PostgreSQL's")
    seed(engine)
    make_module(mods, "sly", "CREATE TABLE sly_x (id INTEGER)")
    enable_module(engine, "sly", ADMIN)
    with pytest.raises(ConfinementError, match="left its role"), module_connection("sly", engine) as conn:
        conn.exec_driver_sql("RESET ROLE")
        conn.exec_driver_sql("UPDATE customers SET name = 'pwned'")
    with engine.connect() as conn:
        assert "pwned" not in conn.execute(text("SELECT name FROM customers")).scalars().all()


def test_remove_data_with_overlapping_names_drops_only_the_modules_own_objects(engine, mods):
    make_module(mods, "abc_def", "CREATE TABLE abc_def_items (id INTEGER)")
    enable_module(engine, "abc_def", ADMIN)
    make_module(mods, "abc", "CREATE TABLE abc_items (id INTEGER)")
    reg = load_registry(engine)
    assert reg.get("abc").status == "unavailable" and "overlaps module abc_def" in reg.get("abc").error
    assert reg.get("abc_def").status == "enabled"  # the installed one keeps working
    with pytest.raises(InputError, match="overlaps"):
        enable_module(engine, "abc", ADMIN)
    plan = removal_plan(engine, "abc")
    assert plan.tables == [] and plan.views == []
    assert main(["modules", "remove-data", "abc", "--apply"]) == 0
    assert "abc_def_items" in inspect(engine).get_table_names()
    disable_module(engine, "abc_def", ADMIN)
    plan = removal_plan(engine, "abc_def")
    assert plan.tables == ["abc_def_items"]
    remove_module_data(engine, "abc_def", plan, ADMIN)
    assert "abc_def_items" not in inspect(engine).get_table_names()


def test_module_folder_symlinked_outside_modules_dir_is_refused(engine, mods, tmp_path):
    outside = make_module(tmp_path / "elsewhere", "sneaky", "CREATE TABLE sneaky_x (id INTEGER)")
    (mods / "sneaky").symlink_to(outside, target_is_directory=True)
    forget_discovery()
    info = load_registry(engine).get("sneaky")
    assert info.status == "unavailable" and "outside MODULES_DIR" in info.error
    with pytest.raises(InputError, match="outside MODULES_DIR"):
        enable_module(engine, "sneaky", ADMIN)


@pytest.mark.parametrize("args", [["enable", "m"], ["disable", "m"], ["remove-data", "m"],
                                  ["remove-data", "m", "--apply"], ["set", "m", "READ_ONLY", "false"]])
def test_viewer_and_operator_are_refused_every_module_action(engine, mods, monkeypatch, capsys, args):
    make_module(mods, "m", "CREATE TABLE m_x (id INTEGER)")
    for role in ("viewer", "operator"):
        monkeypatch.setenv("HUB_CLI_ROLE", role)
        assert main(["modules", *args]) == 2
        assert "needs the 'admin' role" in capsys.readouterr().err
    assert "m_x" not in inspect(engine).get_table_names()
    for call in (lambda a: enable_module(engine, "m", a), lambda a: disable_module(engine, "m", a),
                 lambda a: removal_plan(engine, "m", a)):
        with pytest.raises(NotAllowed):
            call(Actor("v@bmc.dk", "operator"))


def test_failing_ordinary_sql_is_a_migration_error_not_a_refusal(engine, mods):
    folder = make_module(mods, "clumsy", "CREATE TABLE clumsy_x (id INTEGER);\nINSERT INTO clumsy_missing VALUES (1)")
    with pytest.raises(MigrationError) as failed:
        migrate_module(engine, folder / "migrations", Sandbox("clumsy", "clumsy_"))
    assert not isinstance(failed.value, MigrationRefused)
    assert "clumsy_x" not in inspect(engine).get_table_names()


def _everything(engine) -> dict:
    insp = inspect(engine)
    with engine.connect() as conn:
        return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in sorted(insp.get_table_names())}


def test_reads_are_pure_list_health_and_the_modules_page_write_nothing(engine, mods, capsys):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    make_module(mods, "fresh", "CREATE TABLE fresh_x (id INTEGER)", enabled=True)
    before = _everything(engine)
    assert main(["modules", "list", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)["modules"]}
    assert listed["fresh"]["enabled"] is False and listed["fresh"]["pending_migrations"] == ["001_m.sql"]
    assert main(["modules", "health", "--json"]) == 0
    at = AppTest.from_file(str(ROOT / "app_pages" / "modules.py"), default_timeout=60).run()
    assert not at.exception
    assert _everything(engine) == before  # no state row, no table: first sight is not recorded by a read
    assert main(["migrate"]) == 0  # `migrate` (like app start and `modules enable`) records it, and enables it
    assert load_registry(engine).get("fresh").enabled and "fresh_x" in inspect(engine).get_table_names()


def test_postgresql_as_a_hub_user_that_is_not_superuser(db_url, mods, monkeypatch):
    """Production: the Hub's user owns the core and has CREATEROLE, not superuser; the confinement holds."""
    if not db_url.startswith("postgresql"):
        pytest.skip("PostgreSQL roles")
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from lib.db import dispose_engines, get_engine
    from lib.migrations import forget_core_ready, migrate_core

    user = f"hub_test_{uuid.uuid4().hex[:8]}"
    admin = get_engine(db_url)
    with admin.begin() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar()
        conn.exec_driver_sql(f'CREATE ROLE "{user}" LOGIN CREATEROLE')
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')  # the core, again, owned by the Hub's user
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{user}"')
    url = make_url(db_url).set(username=user).render_as_string(hide_password=False)
    monkeypatch.setenv("DATABASE_URL", url)
    forget_core_ready()
    try:
        hub = get_engine(url)
        migrate_core(hub)
        seed(hub)
        make_module(mods, "nosy", "CREATE TABLE nosy_x AS SELECT id, name FROM customers", reads=["customers"])
        enable_module(hub, "nosy", ADMIN)
        with module_connection("nosy", hub) as conn:
            assert conn.execute(text("SELECT count(*) FROM nosy_x")).scalar() == 2
        folder = make_module(mods, "evil", "RESET ROLE;\nDELETE FROM customers")
        with pytest.raises(MigrationRefused, match="cannot set parameter"):
            migrate_module(hub, folder / "migrations", Sandbox("evil", "evil_"))
        with hub.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 2
    finally:
        dispose_engines()
        superuser = create_engine(make_url(db_url))
        with superuser.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            db = conn.execute(text("SELECT current_database()")).scalar()
        drop_roles_of_schema(superuser, db, schema)
        with superuser.begin() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{user}" CASCADE')
            conn.exec_driver_sql(f'DROP ROLE "{user}"')
        superuser.dispose()
