"""The database engine confines a module: its migrations and its connections can touch only its own objects.

PostgreSQL: every module has a NOLOGIN role (`role_name`). It may create in the Hub's schema, owns what it
creates, and holds SELECT on the core tables its module.json declares in `reads` — nothing else. Migration
statements run inside a SECURITY DEFINER function owned by that role, where PostgreSQL itself refuses any
change of role (RESET ROLE, SET ROLE, set_config('role', …), SET SESSION AUTHORIZATION); the module's own
connections run under SET LOCAL ROLE. After every migration statement the catalog is read in the same
transaction: an object the role owns without the module's prefix, or outside the schema, rolls the file back.

SQLite: an authorizer (`sqlite3.Connection.set_authorizer`) on the module's connection refuses, while SQLite
prepares each statement, every write and DDL on a name outside the prefix, ATTACH/DETACH, PRAGMAs other than
read-only introspection, ANALYZE/REINDEX of others' objects, and reads of tables neither the module's nor
declared in `reads`. Statements run one at a time (sqlite3 refuses a string with more than one).

The audit log: a module's connection may add entries to `changes` for its own tables (lib.modules
.audited_update), on PostgreSQL only through `hub_log_change` (migration 019), which accepts only tables the
calling role owns; on SQLite the authorizer lets it INSERT there (nothing else), and undo refuses an entry of a
module's run that names a table outside the module's prefix.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from lib.errors import InputError

# SQLite authorizer action codes (sqlite3.h); Python's module names clash with result codes, so spelled here.
CREATE_INDEX, CREATE_TABLE, CREATE_TEMP_INDEX, CREATE_TEMP_TABLE, CREATE_TEMP_TRIGGER = 1, 2, 3, 4, 5
CREATE_TEMP_VIEW, CREATE_TRIGGER, CREATE_VIEW, DELETE, DROP_INDEX, DROP_TABLE = 6, 7, 8, 9, 10, 11
DROP_TEMP_INDEX, DROP_TEMP_TABLE, DROP_TEMP_TRIGGER, DROP_TEMP_VIEW, DROP_TRIGGER, DROP_VIEW = 12, 13, 14, 15, 16, 17
INSERT, PRAGMA, READ, SELECT, TRANSACTION, UPDATE, ATTACH, DETACH = 18, 19, 20, 21, 22, 23, 24, 25
ALTER_TABLE, REINDEX, ANALYZE, CREATE_VTABLE, DROP_VTABLE, FUNCTION, SAVEPOINT, RECURSIVE = range(26, 34)

_CREATE_DROP = {
    CREATE_INDEX: "create index", CREATE_TABLE: "create table", CREATE_TEMP_INDEX: "create index",
    CREATE_TEMP_TABLE: "create table", CREATE_TEMP_TRIGGER: "create trigger", CREATE_TEMP_VIEW: "create view",
    CREATE_TRIGGER: "create trigger", CREATE_VIEW: "create view", DROP_INDEX: "drop index",
    DROP_TABLE: "drop table", DROP_TEMP_INDEX: "drop index", DROP_TEMP_TABLE: "drop table",
    DROP_TEMP_TRIGGER: "drop trigger", DROP_TEMP_VIEW: "drop view", DROP_TRIGGER: "drop trigger",
    DROP_VIEW: "drop view", CREATE_VTABLE: "create virtual table", DROP_VTABLE: "drop virtual table",
    REINDEX: "reindex", ANALYZE: "analyze",
}
_WRITES = {INSERT: "insert into", UPDATE: "update", DELETE: "delete from"}
# Introspection a module (and SQLAlchemy's inspector) may use; every other PRAGMA is refused.
_READ_PRAGMAS = frozenset({"table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
                           "foreign_key_list"})
# SQLite's own catalog: it writes these itself while running the module's DDL (direct writes to sqlite_master
# need PRAGMA writable_schema, which is refused).
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_schema", "sqlite_temp_master", "sqlite_temp_schema"})


class ConfinementError(InputError):
    """A module's SQL reached outside what the module owns or declared; nothing of it was kept (exit 2)."""


@dataclass(frozen=True)
class Sandbox:
    """What one module may touch: its name prefix and the core tables it declared it reads."""

    module: str
    prefix: str
    reads: tuple[str, ...] = ()

    def owns(self, name: str | None) -> bool:
        return bool(name) and name.lower().startswith(self.prefix)


# ----------------------------------------------------------------------------------------------------------------
# SQLite: the authorizer
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class SqliteAuthorizer:
    """sqlite3 authorizer callback for one module; `denied` keeps the reason SQLite's "not authorized" lacks."""

    sandbox: Sandbox
    allow_transactions: bool = True
    may_log_changes: bool = False  # INSERT into the audit log `changes` (lib.modules.audited_update), nothing else of it
    denied: list[str] = field(default_factory=list)
    _dropping_own: bool = False

    def new_statement(self) -> None:
        self._dropping_own = False

    def _deny(self, reason: str) -> int:
        self.denied.append(reason)
        return sqlite3.SQLITE_DENY

    def __call__(self, action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None) -> int:
        s = self.sandbox
        where = f" (inside {source})" if source else ""
        if db not in (None, "main", "temp"):
            return self._deny(f"database {db!r} is not the Hub's")
        if action in (ATTACH, DETACH):
            return self._deny("ATTACH/DETACH DATABASE is not allowed for modules")
        if action == PRAGMA:
            if (arg1 or "").lower() in _READ_PRAGMAS:
                return sqlite3.SQLITE_OK
            return self._deny(f"PRAGMA {arg1} is not allowed for modules (only table_info and the like)")
        if action in (TRANSACTION, SAVEPOINT):
            if self.allow_transactions:
                return sqlite3.SQLITE_OK
            return self._deny("transaction control in a migration (the runner owns the transaction)")
        if action in _CREATE_DROP:
            names = [arg1] if action in (DROP_TABLE, DROP_VIEW, CREATE_TABLE, CREATE_VIEW, CREATE_TEMP_TABLE,
                                         CREATE_TEMP_VIEW, DROP_TEMP_TABLE, DROP_TEMP_VIEW, CREATE_VTABLE,
                                         DROP_VTABLE, REINDEX, ANALYZE) else [arg1, arg2]
            if action in (CREATE_INDEX, DROP_INDEX) and (arg1 or "").startswith(f"sqlite_autoindex_{arg2}_"):
                names = [arg2]  # SQLite's own index for a UNIQUE or PRIMARY KEY constraint of that table
            for name in names:
                if name is not None and not s.owns(name):
                    return self._deny(f"{_CREATE_DROP[action]} '{name}'{where}: module {s.module} may only create "
                                      f"or change objects named {s.prefix}…")
            if action == DROP_TABLE:
                self._dropping_own = True
            return sqlite3.SQLITE_OK
        if action == ALTER_TABLE:
            if not s.owns(arg2):
                return self._deny(f"alter table '{arg2}'{where}: module {s.module} may only change objects "
                                  f"named {s.prefix}…")
            return sqlite3.SQLITE_OK
        if action in _WRITES:
            name = (arg1 or "").lower()
            if s.owns(name) or name in _SCHEMA_TABLES:
                return sqlite3.SQLITE_OK
            if name == "changes" and action == INSERT and self.may_log_changes:
                return sqlite3.SQLITE_OK
            if name == "sqlite_sequence" and action == DELETE and self._dropping_own:
                return sqlite3.SQLITE_OK  # SQLite forgets a dropped AUTOINCREMENT table's counter
            return self._deny(f"{_WRITES[action]} '{arg1}'{where}: module {s.module} may only write tables "
                              f"named {s.prefix}…")
        if action == READ:
            name = (arg1 or "").lower()
            if s.owns(name) or name in s.reads or name in _SCHEMA_TABLES or name == "sqlite_sequence":
                return sqlite3.SQLITE_OK
            return self._deny(f"read of '{arg1}'{where}: module {s.module} did not declare it in \"reads\" "
                              "in module.json")
        if action == FUNCTION and (arg2 or "").lower() == "load_extension":
            return self._deny("load_extension is not allowed for modules")
        return sqlite3.SQLITE_OK


def _dbapi(conn: Connection):
    return conn.connection.dbapi_connection


# ----------------------------------------------------------------------------------------------------------------
# PostgreSQL: the module's role
# ----------------------------------------------------------------------------------------------------------------

def role_name(conn: Connection, module: str) -> str:
    """`hub_mod_<module>_<8 hex>`: roles are cluster-wide, so the suffix names this database and schema."""
    db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
    return f"hub_mod_{module}_{hashlib.sha1(f'{db}.{schema}'.encode()).hexdigest()[:8]}"


def role_suffix(database: str, schema: str) -> str:
    return hashlib.sha1(f"{database}.{schema}".encode()).hexdigest()[:8]


def _quote(conn: Connection, name: str) -> str:
    return conn.dialect.identifier_preparer.quote_identifier(name)


def ensure_role(conn: Connection, sandbox: Sandbox) -> str:
    """Create the module's role if missing and give it exactly: USAGE and CREATE on the schema, SELECT on `reads`."""
    role = role_name(conn, sandbox.module)
    exists = conn.execute(text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :r"), {"r": role}).scalar()
    if not exists:
        conn.exec_driver_sql("SAVEPOINT hub_role")
        try:
            conn.exec_driver_sql(f"CREATE ROLE {_quote(conn, role)} NOLOGIN")
            conn.exec_driver_sql("RELEASE SAVEPOINT hub_role")
        except Exception as exc:  # noqa: BLE001 - another process may have created it in between: same result
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT hub_role")
            if not conn.execute(text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :r"), {"r": role}).scalar():
                raise ConfinementError(
                    f"module {sandbox.module}: the Hub's database user cannot create its role {role} "
                    f"({str(exc).strip().splitlines()[0]}). Give it CREATEROLE, or have an administrator run: "
                    f"CREATE ROLE {role} NOLOGIN; GRANT {role} TO <the Hub's user>") from None
    is_super = conn.execute(text("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user")).scalar()
    if not is_super:  # the Hub's own user must be able to act as the role (PostgreSQL 16+ needs it explicitly)
        conn.exec_driver_sql(f"GRANT {_quote(conn, role)} TO CURRENT_USER")
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    q_role, q_schema = _quote(conn, role), _quote(conn, schema)
    conn.exec_driver_sql(f"GRANT USAGE, CREATE ON SCHEMA {q_schema} TO {q_role}")
    granted = conn.execute(text(
        "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'v', 'm', 'p', 'S') "
        "AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :r) "
        "AND pg_catalog.has_table_privilege(:r, c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')"
    ), {"r": role}).scalars().all()
    for table in granted:
        if table not in sandbox.reads:
            conn.exec_driver_sql(f"REVOKE ALL ON {q_schema}.{_quote(conn, table)} FROM {q_role}")
    for table in sandbox.reads:
        present = conn.execute(text(
            "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = :t"), {"t": table}).scalar()
        if not present:
            raise ConfinementError(f"module {sandbox.module}: \"reads\" names {table!r}, which is not a table here")
        conn.exec_driver_sql(f"GRANT SELECT ON {q_schema}.{_quote(conn, table)} TO {q_role}")
    return role


_EXEC_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.hub_module_exec(statement text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER AS $hub$ BEGIN EXECUTE statement; END $hub$
"""


@dataclass(frozen=True)
class OwnedObject:
    kind: str
    schema: str | None
    name: str
    identity: str


def owned_objects(conn: Connection, role: str) -> list[OwnedObject]:
    """Every object in this database the role owns, read from the catalog (pg_shdepend)."""
    rows = conn.execute(text(
        "SELECT o.type, o.schema, o.name, o.identity FROM pg_catalog.pg_shdepend d "
        "JOIN pg_catalog.pg_database db ON db.oid = d.dbid AND db.datname = pg_catalog.current_database() "
        "CROSS JOIN LATERAL pg_catalog.pg_identify_object(d.classid, d.objid, d.objsubid) o "
        "WHERE d.deptype = 'o' AND d.refobjid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :r) "
        "ORDER BY o.type, o.identity"
    ), {"r": role}).all()
    out = []
    for kind, schema, name, identity in rows:
        if name is None:  # functions, operators…: the name is the identity without schema and arguments
            bare = identity.split(".", 1)[1] if schema and identity.startswith(f"{schema}.") else identity
            name = bare.split("(", 1)[0]
        out.append(OwnedObject(kind, schema, name.strip('"'), identity))
    return out


def check_owned(conn: Connection, sandbox: Sandbox, role: str, schema: str) -> list[OwnedObject]:
    """The role's objects; ConfinementError when one lies outside the schema or lacks the prefix."""
    objects = owned_objects(conn, role)
    for obj in objects:
        if obj.name == "hub_module_exec" and (obj.schema or "").startswith("pg_temp"):
            continue  # the runner's own wrapper, gone with the transaction's session
        if obj.schema != schema:
            raise ConfinementError(f"{obj.kind} {obj.identity}: module {sandbox.module} may only create objects "
                                   f"in the Hub's schema, named {sandbox.prefix}…")
        if not sandbox.owns(obj.name):
            raise ConfinementError(f"{obj.kind} {obj.identity}: module {sandbox.module} may only create objects "
                                   f"named {sandbox.prefix}…")
    return objects


# ----------------------------------------------------------------------------------------------------------------
# Running a module's SQL
# ----------------------------------------------------------------------------------------------------------------

@contextmanager
def confined_statements(conn: Connection, sandbox: Sandbox) -> Iterator[Callable[[str], None]]:
    """Inside an open transaction: a function that runs one migration statement as the module, then checks.

    Raises ConfinementError (with the engine's reason) for anything outside the module; the caller rolls back.
    """
    if conn.dialect.name == "postgresql":
        yield from _pg_statements(conn, sandbox)
    else:
        yield from _sqlite_statements(conn, sandbox)


def _pg_statements(conn: Connection, sandbox: Sandbox) -> Iterator[Callable[[str], None]]:
    role = ensure_role(conn, sandbox)
    schema = conn.execute(text("SELECT current_schema()")).scalar()
    search_path = conn.execute(text("SELECT pg_catalog.current_setting('search_path')")).scalar()
    dbapi = _dbapi(conn)

    def run(statement: str) -> None:
        cursor = dbapi.cursor()
        try:
            # Recreated before every statement: the module owns the function and could have replaced it.
            cursor.execute(_EXEC_FUNCTION)
            cursor.execute(f"ALTER FUNCTION pg_temp.hub_module_exec(text) OWNER TO {_quote(conn, role)}")
            cursor.execute("SAVEPOINT hub_module_statement")
            try:
                cursor.execute("SELECT pg_temp.hub_module_exec(%s::text)", (statement,))
            except Exception as exc:  # noqa: BLE001 - the engine's refusal is the message
                cursor.execute("ROLLBACK TO SAVEPOINT hub_module_statement")
                if _refused(exc):
                    raise ConfinementError(_pg_reason(exc, sandbox)) from None
                raise
            cursor.execute("SELECT pg_catalog.current_setting('search_path')")
            if cursor.fetchone()[0] != search_path:
                raise ConfinementError(f"module {sandbox.module} changed search_path; modules may not")
        finally:
            cursor.close()
        check_owned(conn, sandbox, role, schema)

    yield run


_PERMISSION_HINTS = ("permission denied", "must be owner", "cannot set parameter", "must be superuser")


def _refused(exc: Exception) -> bool:
    # SQLSTATE class 42501 insufficient_privilege; 0A000 feature_not_supported (transaction control in a function)
    return getattr(exc, "pgcode", None) in ("42501", "0A000") or any(h in str(exc) for h in _PERMISSION_HINTS)


def _pg_reason(exc: Exception, sandbox: Sandbox) -> str:
    message = str(getattr(exc, "pgerror", None) or exc).strip().splitlines()[0]
    message = message.removeprefix("ERROR:").strip()
    return (f"refused by PostgreSQL: {message} (module {sandbox.module} runs as its own role: it may create "
            f"objects named {sandbox.prefix}… and read only {', '.join(sandbox.reads) or 'its own tables'})")


def _sqlite_statements(conn: Connection, sandbox: Sandbox) -> Iterator[Callable[[str], None]]:
    dbapi = _dbapi(conn)
    authorizer = SqliteAuthorizer(sandbox, allow_transactions=False)

    def run(statement: str) -> None:
        authorizer.new_statement()
        authorizer.denied.clear()
        cursor = dbapi.cursor()
        dbapi.set_authorizer(authorizer)
        try:
            cursor.execute(statement)
        except sqlite3.DatabaseError:
            if authorizer.denied:
                raise ConfinementError(f"refused by SQLite: {authorizer.denied[0]}") from None
            raise
        except sqlite3.ProgrammingError as exc:  # e.g. "You can only execute one statement at a time."
            raise ConfinementError(f"{exc} (run statements one by one)") from None
        finally:
            dbapi.set_authorizer(None)
            cursor.close()

    yield run


@contextmanager
def module_session(conn: Connection, sandbox: Sandbox) -> Iterator[None]:
    """Confine an open transaction of the module's code: SET LOCAL ROLE, or the SQLite authorizer.

    Module Python code is trusted like any code in the repository; this keeps its SQL inside its own tables.
    On PostgreSQL the role is checked again before the caller commits (a RESET ROLE rolls everything back).
    """
    if conn.dialect.name == "postgresql":
        role = role_name(conn, sandbox.module)
        if not conn.execute(text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :r"), {"r": role}).scalar():
            raise ConfinementError(f"module {sandbox.module} has no database role yet: enable it first")
        conn.exec_driver_sql(f"SET LOCAL ROLE {_quote(conn, role)}")
        try:
            yield
        except DBAPIError as exc:
            if _refused(exc.orig):
                raise ConfinementError(_pg_reason(exc.orig, sandbox)) from exc
            raise
        if conn.execute(text("SELECT current_user")).scalar() != role:
            raise ConfinementError(f"module {sandbox.module} left its role; its work is rolled back")
        return
    dbapi = _dbapi(conn)
    authorizer = SqliteAuthorizer(sandbox, allow_transactions=True, may_log_changes=True)
    dbapi.set_authorizer(authorizer)
    try:
        yield
    except DBAPIError as exc:
        if authorizer.denied:
            raise ConfinementError(f"refused by SQLite: {authorizer.denied[-1]}") from exc
        raise
    finally:
        dbapi.set_authorizer(None)


def drop_roles_of_schema(engine: Engine, database: str, schema: str) -> None:
    """Tests: drop the module roles made for one (dropped) schema."""
    suffix = role_suffix(database, schema)
    with engine.begin() as conn:
        roles = conn.execute(text("SELECT rolname FROM pg_catalog.pg_roles WHERE rolname LIKE 'hub\\_mod\\_%' "
                                  "AND rolname LIKE :s"), {"s": f"%\\_{suffix}"}).scalars().all()
        for role in roles:
            conn.exec_driver_sql(f"DROP OWNED BY {_quote(conn, role)}")
            conn.exec_driver_sql(f"DROP ROLE {_quote(conn, role)}")
