"""`manage.py migrate [--status] [--json]`."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.db import get_engine
from lib.migrations import CORE_MIGRATIONS_DIR, CORE_MODULE, MigrationStatus, migrate_core, status

NAME = "migrate"
HELP = "apply pending core and enabled modules' migrations (--status only reports)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", action="store_true", help="report applied / pending / failed / changed files")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _module_hooks():
    try:
        from lib import modules
    except ImportError:
        return None
    return modules


def _status_rows(engine) -> list[MigrationStatus]:
    """Core files, then enabled modules' files; a pure read (no lock, no DDL, no first sight of modules).
    Module state lives in core tables, so with core files pending no module can be enabled yet."""
    rows = status(engine, CORE_MIGRATIONS_DIR, CORE_MODULE)
    modules = _module_hooks()
    core_applied = all(r.state == "applied" for r in rows)
    if core_applied and modules is not None and hasattr(modules, "module_migration_status"):
        rows += modules.module_migration_status(engine)
    return rows


def _row(s: MigrationStatus) -> dict:
    return {"module": s.module, "version": s.version, "filename": s.filename, "state": s.state,
            "applied_at": s.applied_at, "execution_ms": s.execution_ms, "error": s.error}


def run(args: argparse.Namespace) -> int:
    from lib.db import check_connection

    engine = get_engine()
    check_connection(engine)
    if args.status:
        rows = [_row(s) for s in _status_rows(engine)]
        emit(args, {"migrations": rows}, lambda d: "\n".join(
            f"{r['state']:8} {r['module']}/{r['filename']}" + (f"  ({r['error']})" if r["error"] else "")
            for r in d["migrations"]) or "no migration files")
        return 1 if any(r["state"] in ("failed", "changed") for r in rows) else 0
    applied = [{"module": f.module, "filename": f.filename} for f in migrate_core(engine)]
    modules = _module_hooks()
    if modules is not None and hasattr(modules, "migrate_enabled_modules"):
        applied += [{"module": f.module, "filename": f.filename} for f in modules.migrate_enabled_modules(engine)]
    emit(args, {"applied": applied}, lambda d: "\n".join(
        f"applied {a['module']}/{a['filename']}" for a in d["applied"]) or "database is up to date")
    return 0
