"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from TEST_DATABASE_URL (CI creates a fresh database and exports it) or the local server
at 127.0.0.1:5432; each test gets its own schema. Outside CI a missing server skips those tests with the
reason; in CI (CI=true) it fails them.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lib import config  # noqa: E402
from lib.db import dispose_engines, get_engine  # noqa: E402
from lib.migrations import forget_core_ready, migrate_core  # noqa: E402
from lib.runs import stop_heartbeats  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_BASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
CHROMIUM = "/usr/bin/chromium"

_pg_problem: str | None = None
_pg_checked = False


def postgres_problem() -> str | None:
    """None when the PostgreSQL test server answers, else why not."""
    global _pg_checked, _pg_problem
    if not _pg_checked:
        _pg_checked = True
        try:
            probe = create_engine(PG_BASE_URL, connect_args={"connect_timeout": 3})
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            probe.dispose()
        except Exception as exc:  # noqa: BLE001
            _pg_problem = f"PostgreSQL not reachable at {PG_BASE_URL}: {str(exc).splitlines()[0]}"
    return _pg_problem


def require_postgres() -> None:
    problem = postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(problem)
        pytest.skip(problem)


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not installed at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_BASE_URL else "?"
    return f"{PG_BASE_URL}{sep}options=-csearch_path%3D{schema}"


def _new_database_url(kind: str, tmp_path: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}", lambda: None
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop():
        from lib.module_sandbox import drop_roles_of_schema

        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            database = conn.execute(text("SELECT current_database()")).scalar()
        drop_roles_of_schema(admin, database, schema)  # module roles are cluster-wide (lib/module_sandbox.py)
        admin.dispose()

    return _pg_schema_url(schema), drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path, monkeypatch):
    """A fresh, empty database (no migrations) and DATABASE_URL pointing at it."""
    url, drop = _new_database_url(request.param, tmp_path)
    monkeypatch.setenv("DATABASE_URL", url)
    forget_core_ready()
    yield url
    stop_heartbeats()  # runs a test left open: their heartbeat threads must not outlive its database
    dispose_engines()
    forget_core_ready()
    drop()


@pytest.fixture
def engine(db_url):
    """A fresh database with the core migrations applied, on SQLite and on PostgreSQL."""
    eng = get_engine(db_url)
    migrate_core(eng)
    return eng


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path):
    """Tests never read the developer's .env or secrets.toml, nor real service settings."""
    monkeypatch.setattr(config, "CONFIG_ROOT", tmp_path / "no-config-root")
    config.reload_files()
    for name in list(os.environ):
        if name.startswith(("CVR_", "ECONOMIC_", "VTIGER_", "SIMPLYCRM_", "MODULES_", "REQUIRE_LOGIN", "HUB_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JOBS_DIR", str(tmp_path / "jobs"))  # uploads and worker logs of pages' worker processes
    yield
    config.reload_files()


@pytest.fixture
def copy_tree(tmp_path):
    """Copy a folder into tmp_path and return the copy."""

    def _copy(src: Path, name: str | None = None) -> Path:
        dest = tmp_path / (name or src.name)
        shutil.copytree(src, dest)
        return dest

    return _copy
