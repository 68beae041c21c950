"""A module's migrations, run confined (lib.module_sandbox): one file per transaction, one statement at a time.

The history is the shared `module_migrations` table (same rows and checksums as the core runner). Each file also
records, in the same transaction, which database objects the module now has (`module_objects`): what the
catalog shows the module's role owning on PostgreSQL, what appeared in `sqlite_master` on SQLite. Removing a
module's data drops exactly those.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from lib.errors import InputError
from lib.migrations import (
    MigrationDrift,
    MigrationError,
    MigrationFile,
    MigrationRefused,
    _check_drift,
    _history,
    _now,
    _record_failure,
    _short,
    already_applied,
    discover,
    ensure_history_table,
)
from lib.module_sandbox import ConfinementError, Sandbox, confined_statements, owned_objects, role_name
from lib.sql_split import split_sql

_ADVISORY_KEY = 727_274_001  # the core runner's lock: module and core migrations never run at once


def sqlite_objects(conn: Connection) -> dict[str, str]:
    """name → type of every table, view, index and trigger SQLite knows (its own `sqlite_` ones excluded)."""
    rows = conn.execute(text("SELECT name, type FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"))
    return {name: kind for name, kind in rows}


def recorded_objects(conn: Connection, module: str) -> dict[str, str]:
    rows = conn.execute(text("SELECT name, kind FROM module_objects WHERE module = :m"), {"m": module})
    return {name: kind for name, kind in rows}


def _record_objects(conn: Connection, module: str, before: dict[str, str], after: dict[str, str]) -> None:
    for name in before.keys() - after.keys():
        conn.execute(text("DELETE FROM module_objects WHERE module = :m AND name = :n"), {"m": module, "n": name})
    for name in after.keys() - before.keys():
        conn.execute(text("INSERT INTO module_objects (module, kind, name, created_at) VALUES (:m, :k, :n, :at)"),
                     {"m": module, "k": after[name], "n": name, "at": _now()})


def _pg_objects(conn: Connection, module: str) -> dict[str, str]:
    role = role_name(conn, module)
    return {o.name: o.kind for o in owned_objects(conn, role) if not (o.schema or "").startswith("pg_temp")}


def migrate_module(engine: Engine, folder: Path, sandbox: Sandbox) -> list[MigrationFile]:
    """Apply the module's pending files in order; stops at the first refused or failing one (raises)."""
    ensure_history_table(engine)
    files = discover(folder, engine.dialect.name, sandbox.module)
    with engine.connect() as conn:
        history = _history(conn, sandbox.module)
    _check_drift(history, files, sandbox.module)
    applied: list[MigrationFile] = []
    for f in files:
        row = history.get(f.version)
        if row is not None and row["success"]:
            continue
        if _apply_file(engine, f, split_sql(f.read()), sandbox):
            applied.append(f)
    return applied


def _apply_file(engine: Engine, f: MigrationFile, statements: list[str], sandbox: Sandbox) -> bool:
    started = time.perf_counter()
    current = ""
    failure: Exception | None = None
    conn = engine.connect()
    try:
        if conn.dialect.name == "sqlite":
            conn.info["write_lock"] = True
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
            if already_applied(conn, f):
                return False
            objects = _pg_objects if conn.dialect.name == "postgresql" else lambda c, _m: sqlite_objects(c)
            before = recorded_objects(conn, f.module) if conn.dialect.name == "postgresql" else objects(conn, f.module)
            with confined_statements(conn, sandbox) as run:
                for number, statement in enumerate(statements, start=1):
                    current = f"statement {number} ({_short(statement)})"
                    run(statement)
            _record_objects(conn, f.module, before, objects(conn, f.module))
            conn.execute(
                text(
                    "INSERT INTO module_migrations (module, version, filename, checksum, applied_at, execution_ms, "
                    "success) VALUES (:m, :v, :f, :c, :at, :ms, TRUE)"
                ),
                {"m": f.module, "v": f.version, "f": f.filename, "c": f.checksum, "at": _now(),
                 "ms": int((time.perf_counter() - started) * 1000)},
            )
    except MigrationDrift:
        raise
    except Exception as exc:  # noqa: BLE001 - any database error fails the file the same way
        failure = exc
    finally:
        conn.invalidate()  # the session the module's SQL ran in is never handed to anyone else
        conn.close()
    if failure is None:
        return True
    reason = str(getattr(failure, "orig", None) or failure).strip().splitlines()[0]
    message = f"migration {f.module}/{f.filename} failed at {current or 'start'}: {reason}"
    _record_failure(engine, f, message, int((time.perf_counter() - started) * 1000))
    if isinstance(failure, ConfinementError | InputError):
        raise MigrationRefused(message) from failure
    raise MigrationError(message) from failure
