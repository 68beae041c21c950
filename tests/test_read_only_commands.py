"""`doctor` and `migrate --status` are pure reads (#15.3): the database is byte-for-byte / catalog-for-catalog
the same afterwards, also on an empty database, and a migration holding its lock does not block them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine.url import make_url

from lib.customers import create_customer
from lib.db import dispose_engines, get_engine
from lib.migrations import CORE_MIGRATIONS_DIR, discover, forget_core_ready, migrate_core
from tests.conftest import ROOT

GOOD_MODULE = ROOT / "tests" / "fixtures" / "modules" / "good"
ADVISORY_KEY = 727_274_001  # lib.migrations' lock


def manage(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], capture_output=True, text=True,
                          env=dict(os.environ), timeout=timeout, cwd=ROOT)


@pytest.fixture
def new_module(tmp_path, monkeypatch) -> Path:
    """A module never seen before whose module.json says enabled: first sight would enable and migrate it."""
    folder = tmp_path / "modules"
    shutil.copytree(GOOD_MODULE, folder / "good")
    manifest = folder / "good" / "module.json"
    manifest.write_text(manifest.read_text().replace('"enabled": false', '"enabled": true'))
    monkeypatch.setenv("MODULES_DIR", str(folder))
    return folder


def _sqlite_path(url: str) -> Path:
    return Path(make_url(url).database)


def _sqlite_snapshot(path: Path) -> tuple[str, list[str]]:
    """Hash of the file's bytes (WAL folded in first) and its full dump."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = list(conn.iterdump())
    conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest(), dump


_PG_CATALOG = [
    "SELECT c.oid::bigint, c.relname, c.relkind, c.relnatts, c.relhasindex, c.relhastriggers, c.relfilenode::bigint "
    "FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace ORDER BY c.relname",
    "SELECT a.attrelid::bigint, a.attnum, a.attname, a.atttypid::bigint, a.attnotnull, a.atthasdef, a.attisdropped "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1, 2",
    "SELECT i.indexrelid::bigint, i.indrelid::bigint, i.indkey::text, i.indisunique, pg_get_indexdef(i.indexrelid) "
    "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = current_schema()::regnamespace "
    "ORDER BY 1",
    "SELECT conname, contype, conrelid::bigint, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = current_schema()::regnamespace ORDER BY 1, 3",
    "SELECT t.tgname, t.tgrelid::bigint FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
    "WHERE c.relnamespace = current_schema()::regnamespace ORDER BY 1",
    "SELECT p.proname, p.prosrc FROM pg_proc p WHERE p.pronamespace = current_schema()::regnamespace ORDER BY 1",
]


def _pg_snapshot(url: str) -> dict:
    """The schema's catalog, and per table its row count and the xmin of every row (any write changes one)."""
    probe = create_engine(url)
    try:
        with probe.connect() as conn:
            shot: dict = {sql[:40]: conn.execute(text(sql)).all() for sql in _PG_CATALOG}
            tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                                       "ORDER BY 1")).scalars().all()
            for table in tables:
                shot[table] = conn.execute(text(
                    f'SELECT count(*), md5(coalesce(string_agg(xmin::text || \':\' || t::text, \',\' '
                    f'ORDER BY t::text), \'\')) FROM "{table}" t')).one()
    finally:
        probe.dispose()
    return shot


def _snapshot(url: str):
    dispose_engines()
    return _sqlite_snapshot(_sqlite_path(url)) if url.startswith("sqlite") else _pg_snapshot(url)


def _run_read_only_commands(url: str) -> tuple[dict, dict]:
    """doctor, then migrate --status; each must leave the database as it found it."""
    before = _snapshot(url)
    doctor = manage("doctor", "--json")
    assert doctor.returncode in (0, 1), doctor.stderr
    after_doctor = _snapshot(url)
    assert after_doctor == before, "doctor changed the database"
    status = manage("migrate", "--status", "--json")
    assert status.returncode == 0, status.stderr
    assert _snapshot(url) == before, "migrate --status changed the database"
    return json.loads(doctor.stdout), json.loads(status.stdout)


def _core_files(url: str) -> list[str]:
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    return [f.filename for f in discover(CORE_MIGRATIONS_DIR, dialect)]


def test_on_an_empty_database_nothing_is_created_and_everything_reads_as_pending(db_url, new_module):
    with get_engine(db_url).connect() as conn:  # the database exists (SQLite: the file), with no table at all
        conn.execute(text("SELECT 1"))
    doctor, status = _run_read_only_commands(db_url)
    assert [(m["module"], m["filename"], m["state"]) for m in status["migrations"]] == \
        [("core", f, "pending") for f in _core_files(db_url)]
    migrations = next(c for c in doctor["checks"] if c["name"] == "migrations")
    assert migrations["status"] == "warn" and f"{len(_core_files(db_url))} pending" in migrations["message"]
    with get_engine(db_url).connect() as conn:
        tables = conn.execute(text(
            "SELECT name FROM sqlite_master WHERE type = 'table'" if db_url.startswith("sqlite")
            else "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")).all()
    assert tables == []


def test_on_a_used_database_with_a_new_module_nothing_is_written(db_url, new_module):
    engine = get_engine(db_url)
    migrate_core(engine)
    create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    doctor, status = _run_read_only_commands(db_url)
    assert {m["state"] for m in status["migrations"]} == {"applied"}
    assert doctor["ok"] is True
    with engine.connect() as conn:  # first sight of the module was not recorded, nor was it enabled
        assert conn.execute(text("SELECT count(*) FROM module_state")).scalar() == 0


def test_a_migration_holding_its_lock_blocks_neither_status_nor_doctor(db_url):
    """A long migration holds the migration lock (PostgreSQL: the advisory lock; SQLite: the write lock)."""
    engine = get_engine(db_url)
    migrate_core(engine)
    forget_core_ready()
    holder = create_engine(db_url)
    with holder.connect() as conn:
        if db_url.startswith("sqlite"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
        try:
            started = time.monotonic()
            status = manage("migrate", "--status", "--json", timeout=60)
            doctor = manage("doctor", "--json", timeout=60)
            elapsed = time.monotonic() - started
        finally:
            conn.rollback()
            if not db_url.startswith("sqlite"):
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
    holder.dispose()
    assert status.returncode == 0, status.stderr
    assert {m["state"] for m in json.loads(status.stdout)["migrations"]} == {"applied"}
    assert doctor.returncode in (0, 1), doctor.stderr
    assert elapsed < 25  # SQLite's busy timeout is 30 s: waiting for the lock would show here
