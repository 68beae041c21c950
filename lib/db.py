"""One SQLAlchemy engine per database URL; SQLite gets foreign keys, WAL and transactional DDL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from lib.config import PROJECT_ROOT, ConfigError, get_settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _sqlite_file_url(url: str) -> str:
    """Relative SQLite paths are relative to the project root; the folder is created."""
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return url
    path = Path(database)
    if not path.is_absolute():
        path = PROJECT_ROOT / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def _fold(value):
    return value.casefold() if isinstance(value, str) else value


def fold_sql(bind: Engine | Connection, expression: str) -> str:
    """Case-insensitive form of a text expression that also folds æ, ø, å and other non-ASCII letters."""
    return f"hub_fold({expression})" if bind.dialect.name == "sqlite" else f"lower({expression})"


def like_contains(query: str) -> str:
    """A LIKE pattern that finds `query` literally anywhere; use it with ESCAPE '\\' (% and _ are no wildcards)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _configure_sqlite(engine: Engine) -> None:
    # SQLAlchemy's documented pysqlite recipe: let SQLAlchemy emit BEGIN itself so DDL is transactional.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        # SQLite's lower() folds ASCII only; searches need "Ø" to find "ø".
        dbapi_connection.create_function("hub_fold", 1, _fold, deterministic=True)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.pop("write_lock", False) else "BEGIN")


def get_engine(url: str | None = None) -> Engine:
    """The cached engine for `url` (default: DATABASE_URL). An unusable URL raises ConfigError."""
    url = url or get_settings().database_url
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(f"DATABASE_URL is not a database URL: {exc}") from None
        try:
            if parsed.get_backend_name() == "sqlite":
                memory = parsed.database in (None, "", ":memory:")
                engine = create_engine(
                    _sqlite_file_url(url),
                    poolclass=NullPool if not memory else None,
                )
                _configure_sqlite(engine)
            else:
                engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"DATABASE_URL names an unsupported database driver: {exc}") from None
        _engines[url] = engine
        return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (IMMEDIATE), so reading first
    and writing later cannot fail with 'database is locked' when another process wrote in between."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.info["write_lock"] = True
        with conn.begin():
            yield conn


def lost_connection(engine: Engine, exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is the database connection going away — terminated by the server,
    the network gone — as opposed to the database refusing a statement. Raw driver errors count too (COPY
    runs on the driver's cursor)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        dbapi = getattr(engine.dialect, "loaded_dbapi", None)
        if dbapi is not None and isinstance(seen, dbapi.Error) and engine.dialect.is_disconnect(seen, None, None):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def as_datetime(value):
    """SQLite hands TIMESTAMP columns of raw SQL back as text; give every caller a datetime."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def dispose_engines() -> None:
    """Close every cached engine (tests, forked processes)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def check_connection(engine: Engine) -> None:
    """Raise ConfigError with one line when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any driver error means the same thing to the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot connect to DATABASE_URL ({engine.url.render_as_string()}): {reason}") from None


def open_database(url: str | None = None) -> Engine:
    """The engine, reachable and with core migrations applied: what the app and every command start with."""
    from lib.migrations import ensure_core_schema

    engine = get_engine(url)
    check_connection(engine)
    ensure_core_schema(engine)
    return engine
