"""The migration runner on SQLite and PostgreSQL: apply, re-apply, failure, drift, concurrency, splitting."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from lib.db import get_engine
from lib.migrations import (
    MigrationDrift,
    MigrationError,
    MigrationRefused,
    discover,
    migrate,
    migrate_core,
    status,
)
from tests.conftest import ROOT


def write(folder, name, sql):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(sql), encoding="utf-8")


def history(engine, module):
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT version, filename, success, error FROM module_migrations WHERE module = :m ORDER BY id"),
            {"m": module},
        ).all()


def test_core_migrations_apply_and_reapply_is_a_no_op(db_url):
    engine = get_engine(db_url)
    first = migrate_core(engine)
    assert [f.version for f in first] == sorted(f.version for f in first) and len(first) >= 4
    tables = set(inspect(engine).get_table_names())
    assert {"customers", "subscriptions", "runs", "changes", "module_migrations"} <= tables
    assert migrate_core(engine) == []
    assert all(s.state == "applied" for s in status(engine, ROOT / "migrations"))
    assert len(history(engine, "core")) == len(first)


def test_plain_sql_insert_uses_database_defaults(engine):
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO customers (name, cvr_number, economic_customer_number, vtiger_account_id, "
                "simplycrm_account_id, subscriptions_locked) VALUES ('Nordlys ApS', '13585628', 1001, NULL, NULL, TRUE)"
            )
        )
        conn.execute(text("INSERT INTO customers (name) VALUES ('Uden CVR A/S')"))
        rows = conn.execute(text("SELECT name, subscriptions_locked, created_at FROM customers ORDER BY id")).all()
    assert [(r[0], bool(r[1])) for r in rows] == [("Nordlys ApS", True), ("Uden CVR A/S", False)]
    assert all(r[2] is not None for r in rows)


@pytest.mark.parametrize("bad", ["1234567", "1234567a", "123456789"])
def test_cvr_check_constraint_rejects_non_8_digit_values(engine, bad):
    with pytest.raises(IntegrityError), engine.begin() as conn:  # SQLAlchemy wraps both drivers' errors
        conn.execute(text("INSERT INTO customers (name, cvr_number) VALUES ('X', :c)"), {"c": bad})


def test_failing_migration_leaves_no_trace_and_is_recorded(db_url, tmp_path):
    engine = get_engine(db_url)
    folder = tmp_path / "m"
    write(folder, "001_ok.sql", "CREATE TABLE demo_a (id INTEGER PRIMARY KEY);")
    write(
        folder,
        "002_half.sql",
        """
        CREATE TABLE demo_b (id INTEGER PRIMARY KEY);
        INSERT INTO demo_a (id) VALUES (1);
        INSERT INTO no_such_table VALUES (1);
        """,
    )
    with pytest.raises(MigrationError) as err:
        migrate(engine, folder, "demo")
    assert "demo/002_half.sql" in str(err.value) and "statement 3" in str(err.value)
    assert "no_such_table" in str(err.value)
    tables = set(inspect(engine).get_table_names())
    assert "demo_a" in tables and "demo_b" not in tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM demo_a")).scalar() == 0
    rows = history(engine, "demo")
    assert [(r.version, bool(r.success)) for r in rows] == [(1, True), (2, False)]
    assert [s.state for s in status(engine, folder, "demo")] == ["applied", "failed"]
    # fixing the file lets the retry through
    write(folder, "002_half.sql", "CREATE TABLE demo_b (id INTEGER PRIMARY KEY);")
    assert [f.version for f in migrate(engine, folder, "demo")] == [2]
    assert [s.state for s in status(engine, folder, "demo")] == ["applied", "applied"]


def test_edited_applied_migration_is_refused(db_url, tmp_path):
    engine = get_engine(db_url)
    folder = tmp_path / "m"
    write(folder, "001_a.sql", "CREATE TABLE drift_a (id INTEGER);")
    migrate(engine, folder, "drift")
    write(folder, "001_a.sql", "CREATE TABLE drift_a (id INTEGER, extra TEXT);")
    write(folder, "002_b.sql", "CREATE TABLE drift_b (id INTEGER);")
    assert [s.state for s in status(engine, folder, "drift")] == ["changed", "pending"]
    with pytest.raises(MigrationDrift, match="001_a.sql"):
        migrate(engine, folder, "drift")
    assert "drift_b" not in inspect(engine).get_table_names()


def test_splitting_keeps_semicolons_percent_and_colons_literal(db_url, tmp_path):
    engine = get_engine(db_url)
    folder = tmp_path / "m"
    write(
        folder,
        "001_tricky.sql",
        """
        -- a comment; with a semicolon
        CREATE TABLE tricky (id INTEGER PRIMARY KEY, note TEXT);
        INSERT INTO tricky (id, note) VALUES (1, 'a;b 100% :name it''s');
        /* block; comment */
        INSERT INTO tricky (id, note) SELECT 2, note FROM tricky WHERE note LIKE 'a;%';
        """,
    )
    if engine.dialect.name == "postgresql":
        write(
            folder,
            "002_function.postgresql.sql",
            """
            CREATE FUNCTION tricky_count() RETURNS bigint AS $$
            BEGIN RETURN (SELECT count(*) FROM tricky); END;
            $$ LANGUAGE plpgsql;
            """,
        )
    migrate(engine, folder, "tricky")
    with engine.connect() as conn:
        notes = conn.execute(text("SELECT note FROM tricky ORDER BY id")).scalars().all()
        assert notes == ["a;b 100% :name it's"] * 2
        if engine.dialect.name == "postgresql":
            assert conn.execute(text("SELECT tricky_count()")).scalar() == 2


def test_dialect_variant_wins_over_portable_file(tmp_path):
    folder = tmp_path / "m"
    write(folder, "001_x.sql", "SELECT 1;")
    write(folder, "001_x.sqlite.sql", "SELECT 2;")
    write(folder, "002_y.postgresql.sql", "SELECT 3;")
    assert [f.filename for f in discover(folder, "sqlite")] == ["001_x.sqlite.sql"]
    assert [f.filename for f in discover(folder, "postgresql")] == ["001_x.sql", "002_y.postgresql.sql"]


def test_badly_named_or_duplicate_files_are_refused(tmp_path):
    folder = tmp_path / "m"
    write(folder, "1_bad name.sql", "SELECT 1;")
    with pytest.raises(MigrationRefused, match="not named"):
        discover(folder, "sqlite")
    (folder / "1_bad name.sql").unlink()
    write(folder, "001_a.sql", "SELECT 1;")
    write(folder, "001_b.sql", "SELECT 1;")
    with pytest.raises(MigrationRefused, match="two migration files have version 001"):
        discover(folder, "sqlite")


def test_concurrent_migrate_applies_each_file_once(db_url, tmp_path):
    folder = tmp_path / "m"
    write(folder, "001_slow.sql", "CREATE TABLE race_a (id INTEGER);")
    write(folder, "002_more.sql", "CREATE TABLE race_b (id INTEGER);")
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from lib.db import get_engine
        from lib.migrations import migrate
        applied = migrate(get_engine({db_url!r}), {str(folder)!r}, "race")
        print(len(applied))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1].decode() for r in results]
    assert sum(int(out.decode().strip()) for out, _ in results) == 2
    engine = get_engine(db_url)
    assert [(r.version, bool(r.success)) for r in history(engine, "race")] == [(1, True), (2, True)]


def test_007_drops_the_audit_logs_foreign_key_and_keeps_every_entry(db_url, tmp_path):
    """Upgrading an installation at 006: the entries, their ids and the indexes survive (SQLite rebuilds the
    table), and an entry may then name a run that is not (yet) there."""
    engine = get_engine(db_url)
    before = tmp_path / "until-006"
    before.mkdir()
    for path in sorted((ROOT / "migrations").glob("*.sql")):
        if path.name < "007":
            (before / path.name).write_bytes(path.read_bytes())
    migrate(engine, before)
    with engine.begin() as conn:
        run_id = conn.execute(text("INSERT INTO runs (kind) VALUES ('test') RETURNING id")).scalar_one()
        for n in range(3):
            conn.execute(text("INSERT INTO changes (run_id, table_name, row_id, action, field, new_value) "
                              "VALUES (:r, 'customers', :n, 'update', 'name', :v)"), {"r": run_id, "n": n, "v": f'"{n}"'})
    with pytest.raises(IntegrityError), engine.begin() as conn:  # SQLAlchemy wraps both drivers' errors
        conn.execute(text("INSERT INTO changes (run_id, table_name, row_id, action, field) "
                          "VALUES (:r, 'customers', 9, 'update', 'name')"), {"r": run_id + 1})
    with engine.connect() as conn:
        entries = conn.execute(text("SELECT id, run_id, row_id, new_value FROM changes ORDER BY id")).all()

    assert [f.version for f in migrate_core(engine)][0] == 7  # and any later ones
    with engine.begin() as conn:
        assert conn.execute(text("SELECT id, run_id, row_id, new_value FROM changes ORDER BY id")).all() == entries
        conn.execute(text("INSERT INTO changes (run_id, table_name, row_id, action, field) "
                          "VALUES (:r, 'customers', 9, 'update', 'name')"), {"r": run_id + 1})
        new_id = conn.execute(text("SELECT max(id) FROM changes")).scalar_one()
    assert new_id > entries[-1][0]
    assert not inspect(engine).get_foreign_keys("changes")
    assert {i["name"] for i in inspect(engine).get_indexes("changes")} >= {"changes_run", "changes_row"}
