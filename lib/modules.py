"""The module registry: discover `MODULES_DIR/<name>/module.json`, resolve dependencies, keep state in the database.

Nothing here is ever half-done: enabling applies the module's migrations (each file atomic, see
lib.migrations) and only then flips `module_state.enabled` in one row write, so an interrupted enable is
finished by enabling again. Disabling is one row write; removing data is one transaction.

The module API (what module code may import) is small: get_module_config, module_table, and lib.db.get_engine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.specifiers import SpecifierSet
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from lib import __version__ as HUB_VERSION
from lib.audit import (
    AUDITED_TABLES,
    audit_module_table,
    encode_value,
    log_change,
    normal_value,
    unstamped_tables,
    utcnow,
)
from lib.config import MASK, get_settings, is_secret_name, parse_json_value, raw_setting, raw_settings_with_prefix
from lib.db import get_engine, write_transaction
from lib.errors import HubError, InputError
from lib.migrations import (
    MigrationError,
    MigrationFile,
    MigrationStatus,
    _history,
    discover,
    status,
)
from lib.module_manifest import (
    DEPENDENCY,
    MANIFEST_FILE,
    NAME_PATTERN,
    Manifest,
    ManifestError,
    load_manifest,
    parse_version,
)
from lib.module_migrations import migrate_module, recorded_objects
from lib.module_sandbox import (
    Sandbox,
    _quote,
    module_session,
    owned_objects,
    role_name,
)
from lib.module_tables import core_tables, migration_guard, owned_tables, prefix_clash
from lib.roles import Actor, has_role, require_role
from lib.sql_split import split_sql

__all__ = (
    "ModuleInfo", "Registry", "HealthResult", "RemovalPlan",
    "load_registry", "modules_dir", "enable_module", "disable_module", "removal_plan", "remove_module_data",
    "check_health", "record_page_view", "module_report", "health_report", "dependency_graph_dot",
    "get_module_config", "module_config", "module_table", "migrate_enabled_modules", "module_migration_status",
)

CODE_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_TEMPLATE = CODE_ROOT / "modules" / "_template"
TEMPLATE_FOLDER = "_template"
SYSTEM = Actor("system", "admin", "system")  # the Hub itself: first discovery at app start, `migrate`
HEALTH_MAX_AGE = 30.0
STATUSES = ("enabled", "disabled", "failed", "unavailable")


# --------------------------------------------------------------------------------------------------------------
# Discovery (cached by module.json modification time)
# --------------------------------------------------------------------------------------------------------------

def modules_dir() -> Path:
    """MODULES_DIR as an absolute path (relative paths are relative to the project folder)."""
    path = Path(get_settings().modules_dir)
    return path if path.is_absolute() else CODE_ROOT / path


_manifest_cache: dict[Path, tuple[tuple[int, int], Manifest | ManifestError]] = {}
_scan_cache: dict[Path, dict[str, Manifest | ManifestError]] = {}


def _module_folders(directory: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    return [
        Path(e.path) for e in entries
        if e.is_dir() and not e.name.startswith(".") and e.name not in (TEMPLATE_FOLDER, "__pycache__")
    ]


def _load_cached(folder: Path) -> Manifest | ManifestError:
    path = folder / MANIFEST_FILE
    try:
        st = path.stat()
        key = (st.st_mtime_ns, st.st_size)
    except OSError:
        key = (0, -1)
    hit = _manifest_cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        result: Manifest | ManifestError = load_manifest(folder)
    except ManifestError as exc:
        result = exc
    _manifest_cache[path] = (key, result)
    return result


def discover_manifests(directory: Path | None = None) -> dict[str, Manifest | ManifestError]:
    """Folder name → validated manifest or the ManifestError; re-read only when module.json changed.

    With MODULES_AUTO_RELOAD off the folder is scanned once per process.
    """
    directory = directory or modules_dir()
    if not get_settings().modules_auto_reload and directory in _scan_cache:
        return _scan_cache[directory]
    root = directory.resolve()
    found = {folder.name: _load_cached(folder) if folder.resolve().is_relative_to(root) else ManifestError(
        [f"{folder}: resolves to {folder.resolve()}, outside MODULES_DIR ({directory}); module folders must live "
         "there (no symlinks leading out)"]) for folder in _module_folders(directory)}
    _scan_cache[directory] = found
    return found


def forget_discovery() -> None:
    """Drop every cached manifest (tests, or after MODULES_AUTO_RELOAD=false edits)."""
    _manifest_cache.clear()
    _scan_cache.clear()
    _resolved.clear()
    _health_cache.clear()
    _views.clear()


# --------------------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModuleState:
    name: str
    enabled: bool
    installed_version: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    changed_at: datetime | None = None
    changed_by: str | None = None


@dataclass
class ModuleInfo:
    name: str
    folder: Path
    manifest: Manifest | None
    enabled: bool
    status: str = "disabled"
    reasons: list[str] = field(default_factory=list)
    state: ModuleState | None = None
    dependants: list[str] = field(default_factory=list)

    @property
    def error(self) -> str | None:
        """Why the module is unavailable or failed, one line."""
        if self.reasons:
            return "; ".join(self.reasons)
        if self.state and self.state.last_error:
            return self.state.last_error
        return None

    @property
    def version(self) -> str | None:
        return self.manifest.version if self.manifest else None

    @property
    def dependencies(self) -> list[str]:
        return [str(d) for d in self.manifest.dependencies] if self.manifest else []

    @property
    def available(self) -> bool:
        return self.status != "unavailable"


@dataclass
class Registry:
    directory: Path
    system_enabled: bool
    modules: dict[str, ModuleInfo]  # in dependency order: a module comes after everything it needs

    def get(self, name: str) -> ModuleInfo | None:
        return self.modules.get(name)

    def require(self, name: str) -> ModuleInfo:
        info = self.modules.get(name)
        if info is None:
            raise InputError(f"no module named {name!r} in {self.directory}")
        return info

    @property
    def prefixes(self) -> dict[str, str]:
        return {n: i.manifest.table_prefix for n, i in self.modules.items() if i.manifest}

    def active(self) -> list[ModuleInfo]:
        """Enabled modules whose dependencies hold: the ones with pages and migrations."""
        return [i for i in self.modules.values() if i.enabled and i.available]

    def dependants_of(self, name: str) -> list[str]:
        """Every module that needs `name`, directly or through others."""
        out: list[str] = []
        todo = list(self.modules[name].dependants) if name in self.modules else []
        while todo:
            n = todo.pop(0)
            if n not in out:
                out.append(n)
                todo += self.modules[n].dependants
        return out


def _resolve(
    manifests: dict[str, Manifest | ManifestError], states: dict[str, ModuleState], directory: Path
) -> dict[str, ModuleInfo]:
    infos: dict[str, ModuleInfo] = {}
    for folder_name, m in manifests.items():
        if isinstance(m, ManifestError):
            infos[folder_name] = ModuleInfo(folder_name, directory / folder_name, None, False, "unavailable",
                                            list(m.problems))
            continue
        state = states.get(m.name)
        # never recorded yet: disabled until app start, `migrate` or `modules enable` records (and maybe enables) it
        info = ModuleInfo(m.name, m.folder, m, state.enabled if state else False, state=state)
        if m.hub_version and not SpecifierSet(m.hub_version).contains(parse_version(HUB_VERSION), prereleases=True):
            info.reasons.append(f"needs BMC Hub {m.hub_version}, this is {HUB_VERSION}")
        if clash := prefix_clash(m.table_prefix):
            info.reasons.append(f"table_prefix {m.table_prefix!r} would reach the core table {clash!r}")
        infos[m.name] = info
    by_prefix: dict[str, list[str]] = {}
    for info in infos.values():
        if info.manifest:
            by_prefix.setdefault(info.manifest.table_prefix, []).append(info.name)
    for prefix, names in by_prefix.items():
        for n in names if len(names) > 1 else []:
            others = ", ".join(o for o in names if o != n)
            infos[n].reasons.append(f"table_prefix {prefix!r} is also used by {others}")
    for prefix, names in by_prefix.items():
        for other_prefix, other_names in by_prefix.items():
            if other_prefix != prefix and other_prefix.startswith(prefix):
                # abc_ would reach abc_def_…: the newcomer of the two is refused (an installed one keeps working)
                for n in names + other_names:
                    if not (infos[n].state and infos[n].state.installed_version):
                        clash = other_names if n in names else names
                        infos[n].reasons.append(
                            f"table_prefix {infos[n].manifest.table_prefix!r} overlaps module "
                            f"{', '.join(clash)} (prefixes {prefix!r} and {other_prefix!r}); rename one of them")
    core = core_tables()
    for info in infos.values():
        for table in info.manifest.reads if info.manifest else ():
            if table not in core:
                info.reasons.append(f"reads: {table!r} is not a core table of BMC Hub")
    for info in infos.values():
        for dep in info.manifest.dependencies if info.manifest else ():
            if dep.name in infos:
                infos[dep.name].dependants.append(info.name)

    order: list[str] = []
    done: set[str] = set()
    stack: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in stack:
            cycle = stack[stack.index(name):] + [name]
            for n in cycle[:-1]:
                infos[n].reasons.append(f"dependency cycle: {' → '.join(cycle)}")
            return
        info = infos[name]
        stack.append(name)
        for dep in info.manifest.dependencies if info.manifest else ():
            target = infos.get(dep.name)
            if target is None:
                info.reasons.append(f"depends on {dep.name}, which is not installed (no folder {directory / dep.name})")
                continue
            visit(dep.name)
            if target.reasons:
                if not any(r.startswith("dependency cycle") for r in info.reasons):
                    info.reasons.append(f"depends on {dep.name}, which is unavailable")
            elif not target.enabled:
                info.reasons.append(f"depends on {dep.name}, which is disabled")
            elif dep.specifier and not dep.specifier.contains(parse_version(target.manifest.version), prereleases=True):
                info.reasons.append(f"needs {dep.name}{dep.specifier}, found {dep.name} {target.manifest.version}")
        stack.pop()
        done.add(name)
        order.append(name)

    for name in sorted(infos):
        visit(name)
    for info in infos.values():
        info.reasons = list(dict.fromkeys(info.reasons))
        if info.reasons:
            info.status = "unavailable"
        elif info.state and info.state.last_error:
            info.status = "failed"
        else:
            info.status = "enabled" if info.enabled else "disabled"
    return {n: infos[n] for n in order}


_resolved: dict[tuple, dict[str, ModuleInfo]] = {}


def _resolve_snapshot(manifests: dict[str, Manifest | ManifestError], states: dict[str, ModuleState],
                      directory: Path) -> dict[str, ModuleInfo]:
    """_resolve, memoised on the (cached, hence identical) manifest objects and the state rows."""
    key = (tuple((k, id(v)) for k, v in manifests.items()), tuple(sorted(states.items())), directory)
    resolved = _resolved.get(key)
    if resolved is None:
        if len(_resolved) > 16:
            _resolved.clear()
        resolved = _resolved[key] = _resolve(manifests, states, directory)
    # callers may change what they get, so each gets its own copies
    return {n: ModuleInfo(i.name, i.folder, i.manifest, i.enabled, i.status, list(i.reasons), i.state,
                          list(i.dependants)) for n, i in resolved.items()}


def _read_states(engine: Engine) -> dict[str, ModuleState]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT name, enabled, installed_version, last_error, last_error_at, changed_at, changed_by "
            "FROM module_state"
        )).all()
        conn.rollback()
    return {r[0]: ModuleState(r[0], bool(r[1]), *r[2:]) for r in rows}


def load_registry(engine: Engine) -> Registry:
    """Every discovered module with its status. A pure read, cheap enough for every rerun (one small query).

    A module never seen before shows with its module.json default; its state row is written only by
    `record_new_modules` (app start, `migrate`, `modules enable`).
    """
    directory = modules_dir()
    if not get_settings().modules_enabled:
        return Registry(directory, False, {})
    manifests = discover_manifests(directory)
    states = _read_states(engine)
    return Registry(directory, True, _resolve_snapshot(manifests, states, directory))


def record_new_modules(engine: Engine) -> list[str]:
    """Write the state row of every module seen for the first time; `"enabled": true` enables it now
    (migrations first), and never again afterwards. Returns the new modules' names."""
    registry = load_registry(engine)
    new = [i for i in registry.modules.values() if i.manifest and i.state is None and not i.reasons]
    for info in new:
        if info.manifest.enabled:
            try:
                enable_module(engine, info.name, Actor("system (first discovery)", "admin", "system"))
            except HubError:
                pass  # enable_module recorded the reason; the module stays disabled
        else:
            _write_state(engine, info.name, enabled=False, installed_version=None,
                         actor="system (first discovery)", only_if_missing=True)
    return [i.name for i in new]


# --------------------------------------------------------------------------------------------------------------
# State changes
# --------------------------------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _write_state(engine: Engine, name: str, *, enabled: bool, installed_version: str | None, actor: str,
                 only_if_missing: bool = False) -> None:
    on_conflict = "DO NOTHING" if only_if_missing else (
        "DO UPDATE SET enabled = excluded.enabled, installed_version = excluded.installed_version, "
        "last_error = NULL, last_error_at = NULL, changed_at = excluded.changed_at, changed_by = excluded.changed_by"
    )
    with write_transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO module_state (name, enabled, installed_version, changed_at, changed_by) "
                f"VALUES (:n, :e, :v, :at, :by) ON CONFLICT (name) {on_conflict}"
            ),
            {"n": name, "e": enabled, "v": installed_version, "at": _now(), "by": actor},
        )


def _record_error(engine: Engine, name: str, message: str, actor: str) -> None:
    """Keep the failure where the Modules page shows it; `enabled` stays what it was (false for a new module)."""
    with write_transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO module_state (name, enabled, last_error, last_error_at, changed_at, changed_by) "
                "VALUES (:n, FALSE, :err, :at, :at, :by) ON CONFLICT (name) DO UPDATE SET "
                "last_error = excluded.last_error, last_error_at = excluded.last_error_at"
            ),
            {"n": name, "err": message, "at": _now(), "by": actor},
        )


def sandbox_of(info: ModuleInfo) -> Sandbox:
    return Sandbox(info.name, info.manifest.table_prefix, info.manifest.reads)


def _migrate_module(engine: Engine, registry: Registry, info: ModuleInfo) -> list[MigrationFile]:
    """Apply the module's pending migrations, confined by the database (lib.module_sandbox).

    The text check first only gives an early, friendlier message; the engine is what refuses.
    """
    folder = info.folder / "migrations"
    guard = migration_guard(info.name, registry.prefixes)
    history = _read_history(engine, info.name)
    for f in discover(folder, engine.dialect.name, info.name):
        if not (history.get(f.version) or {}).get("success"):
            for statement in split_sql(f.read()):
                guard(f, statement)
    return migrate_module(engine, folder, sandbox_of(info))


def _read_history(engine: Engine, module: str) -> dict[int, dict]:
    try:
        with engine.connect() as conn:
            return _history(conn, module)
    except Exception:  # noqa: BLE001 - no history table yet: nothing applied
        return {}


def enable_module(engine: Engine, name: str, actor: Actor) -> list[MigrationFile]:
    """Apply pending migrations, then mark enabled (admin only). Refused (InputError) when the module is
    unavailable; a failing migration rolls back, is recorded as the module's error and re-raised."""
    require_role(actor.role, "admin", "enable modules")
    registry = load_registry(engine)
    if not registry.system_enabled:
        raise InputError("the module system is switched off (MODULES_ENABLED=false)")
    info = registry.require(name)
    if info.reasons:
        raise InputError(f"module {name} cannot be enabled: {info.error}")
    try:
        applied = _migrate_module(engine, registry, info)
    except HubError as exc:
        _record_error(engine, name, str(exc), actor.email)
        raise
    _write_state(engine, name, enabled=True, installed_version=info.manifest.version, actor=actor.email)
    _health_cache.pop(name, None)
    return applied


def disable_module(engine: Engine, name: str, actor: Actor) -> list[str]:
    """Mark the module disabled (admin only); returns the enabled dependants that become unavailable with it."""
    require_role(actor.role, "admin", "disable modules")
    registry = load_registry(engine)
    info = registry.get(name)
    states = _read_states(engine)
    if info is None and name not in states:
        raise InputError(f"no module named {name!r} in {registry.directory}")
    going_down = [d for d in registry.dependants_of(name) if registry.modules[d].enabled] if info else []
    installed = states[name].installed_version if name in states else None
    _write_state(engine, name, enabled=False, installed_version=installed, actor=actor.email)
    return going_down


@dataclass(frozen=True)
class RemovalPlan:
    module: str
    tables: list[str]
    views: list[str]
    migration_rows: int
    other: list[str] = field(default_factory=list)  # PostgreSQL: sequences, functions, types… the role owns

    @property
    def empty(self) -> bool:
        return not (self.tables or self.views or self.other or self.migration_rows)


def _catalog_objects(engine: Engine, name: str, registry: Registry) -> tuple[list[str], list[str], list[str]]:
    """(tables, views, other objects) the module owns: by its role on PostgreSQL, by record on SQLite.

    Modules installed before objects were recorded fall back to their prefix (longest prefix wins).
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            role = role_name(conn, name)
            owned = owned_objects(conn, role) if conn.execute(
                text("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = :r"), {"r": role}).scalar() else []
            tables = sorted(o.name for o in owned if o.kind == "table")
            views = sorted(o.name for o in owned if o.kind in ("view", "materialized view"))
            other = sorted(o.identity for o in owned if o.kind not in ("table", "view", "materialized view", "index")
                           and not (o.schema or "").startswith("pg_temp"))
            if owned:
                return tables, views, other
        else:
            try:
                recorded = recorded_objects(conn, name)
            except Exception:  # noqa: BLE001 - before migration 011: nothing recorded
                recorded = {}
            present = dict(conn.execute(text("SELECT name, type FROM sqlite_master")).all())
            if recorded:
                return (sorted(n for n, k in recorded.items() if k == "table" and present.get(n) == "table"),
                        sorted(n for n, k in recorded.items() if k == "view" and present.get(n) == "view"), [])
    if recorded_any(engine, name):
        return [], [], []
    prefixes = registry.prefixes
    prefixes.setdefault(name, f"{name}_")
    inspector = inspect(engine)
    return (owned_tables(name, inspector.get_table_names(), prefixes),
            owned_tables(name, inspector.get_view_names(), prefixes), [])


def recorded_any(engine: Engine, name: str) -> bool:
    """Did a confined migration of this module ever run (so its objects are known exactly)?"""
    try:
        with engine.connect() as conn:
            return bool(conn.execute(text("SELECT 1 FROM module_objects WHERE module = :m"), {"m": name}).first())
    except Exception:  # noqa: BLE001 - no table before migration 011
        return False


def removal_plan(engine: Engine, name: str, actor: Actor | None = None) -> RemovalPlan:
    """Exactly what `remove_module_data` would drop; refused unless the module is disabled."""
    if actor is not None:
        require_role(actor.role, "admin", "remove module data")
    registry = load_registry(engine)
    states = _read_states(engine)
    if not NAME_PATTERN.match(name) or (registry.get(name) is None and name not in states):
        raise InputError(f"no module named {name!r} in {registry.directory}")
    if name in states and states[name].enabled:
        raise InputError(f"module {name} is enabled: disable it before removing its data")
    tables, views, other = _catalog_objects(engine, name, registry)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM module_migrations WHERE module = :m"), {"m": name}).scalar()
    return RemovalPlan(name, tables, views, int(rows or 0), other)


def _drop_order(engine: Engine, tables: list[str]) -> list[str]:
    """Tables that others reference are dropped after them."""
    inspector = inspect(engine)
    needs = {t: {fk["referred_table"] for fk in inspector.get_foreign_keys(t)} & set(tables) - {t} for t in tables}
    order: list[str] = []
    while needs:
        free = sorted(t for t in needs if not any(t in refs for other, refs in needs.items() if other != t))
        if not free:
            free = sorted(needs)
        for t in free:
            order.append(t)
            needs.pop(t)
    return order


def remove_module_data(engine: Engine, name: str, expected: RemovalPlan, actor: Actor) -> RemovalPlan:
    """Drop the module's own objects and forget its migrations, in one transaction (admin only).

    `expected` is the plan the user confirmed; if the database changed since, nothing is dropped.
    PostgreSQL drops what the module's role owns (DROP OWNED BY); SQLite drops what its migrations recorded.
    """
    require_role(actor.role, "admin", "remove module data")
    plan = removal_plan(engine, name)
    if (plan.tables, plan.views, plan.other) != (expected.tables, expected.views, expected.other):
        raise InputError(f"module {name}: the tables changed since they were shown ({', '.join(plan.tables)}); "
                         "review the list again")
    quote = engine.dialect.identifier_preparer.quote
    order = _drop_order(engine, plan.tables)
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql" and recorded_any(engine, name):
            role = role_name(conn, name)
            conn.exec_driver_sql(f"DROP OWNED BY {_quote(conn, role)}")
        else:
            for view in plan.views:
                conn.exec_driver_sql(f"DROP VIEW IF EXISTS {quote(view)}")
            for table in order:
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(table)}")
        if recorded_any(engine, name):
            conn.execute(text("DELETE FROM module_objects WHERE module = :m"), {"m": name})
        conn.execute(text("DELETE FROM module_migrations WHERE module = :m"), {"m": name})
        conn.execute(
            text("UPDATE module_state SET installed_version = NULL, changed_at = :at, changed_by = :by "
                 "WHERE name = :m"),
            {"m": name, "at": _now(), "by": actor.email},
        )
    return plan


# --------------------------------------------------------------------------------------------------------------
# Migrations for `manage.py migrate`
# --------------------------------------------------------------------------------------------------------------

def migrate_enabled_modules(engine: Engine) -> list[MigrationFile]:
    """Apply pending migrations of every enabled module, dependencies first.

    A failing module is recorded and skipped with its dependants; the others still run, then MigrationError
    names the failures (its `applied` attribute lists what did get applied).
    """
    record_new_modules(engine)
    registry = load_registry(engine)
    applied: list[MigrationFile] = []
    failures: list[str] = []
    failed: set[str] = set()
    for info in registry.active():
        blocked = [d.name for d in info.manifest.dependencies if d.name in failed]
        if blocked:
            failed.add(info.name)
            failures.append(f"{info.name}: skipped, {', '.join(blocked)} failed")
            continue
        try:
            applied += _migrate_module(engine, registry, info)
        except HubError as exc:
            _record_error(engine, info.name, str(exc), "migrate")
            failed.add(info.name)
            failures.append(str(exc))
            continue
        if info.state is None or info.state.installed_version != info.manifest.version or info.state.last_error:
            _write_state(engine, info.name, enabled=True, installed_version=info.manifest.version, actor="migrate")
    if failures:
        error = MigrationError("module migrations failed: " + "; ".join(failures))
        error.applied = applied
        raise error
    return applied


def module_migration_status(engine: Engine) -> list[MigrationStatus]:
    """Migration files of every enabled module (applied / pending / failed / changed)."""
    rows: list[MigrationStatus] = []
    for info in load_registry(engine).active():
        rows += status(engine, info.folder / "migrations", info.name)
    return rows


def pending_migrations(engine: Engine, info: ModuleInfo) -> tuple[list[str], str | None]:
    """Filenames not yet applied (or failed, or changed), and a problem reading the folder if any. Reads only."""
    if info.manifest is None:
        return [], None
    try:
        files = discover(info.folder / "migrations", engine.dialect.name, info.name)
    except HubError as exc:
        return [], str(exc)
    history = _read_history(engine, info.name)
    return [f.filename for f in files if not (row := history.get(f.version))
            or not row["success"] or row["checksum"] != f.checksum], None


# --------------------------------------------------------------------------------------------------------------
# Health checks: module code runs in a thread with a timeout, and never more than one at a time per module
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HealthResult:
    name: str
    healthy: bool | None
    message: str
    duration_ms: int = 0
    checked_at: float = 0.0


_health_cache: dict[str, HealthResult] = {}
_health_running: dict[str, tuple[threading.Thread, float]] = {}


def load_module_file(manifest: Manifest, relative: str, suffix: str):
    """Import a file of the module as a fresh Python module (module code changes apply without restart)."""
    path = manifest.folder / relative
    if not path.resolve().is_relative_to(manifest.folder.resolve()):
        raise ImportError(f"{path} resolves outside the module folder")
    module_name = f"hub_module_{manifest.name}_{suffix}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _interpret(value: Any) -> tuple[bool, str]:
    if value is None or value is True:
        return True, "ok"
    if value is False:
        return False, "health check returned False"
    if isinstance(value, tuple) and len(value) == 2:
        return bool(value[0]), str(value[1])
    if isinstance(value, dict):
        return bool(value.get("healthy")), str(value.get("message", ""))
    return bool(value), str(value)


def _run_health_function(manifest: Manifest) -> HealthResult:
    file, func = manifest.health.split(":")
    started = time.perf_counter()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            module = load_module_file(manifest, file, "health")
            box["value"] = _interpret(getattr(module, func)())
        except BaseException as exc:  # noqa: BLE001 - a module's failure of any kind is its own
            box["error"] = f"{type(exc).__name__}: {exc}"

    name = manifest.name
    running = _health_running.get(name)
    if running and running[0].is_alive():
        thread, since = running
        thread.join(max(0.0, manifest.health_timeout - (time.monotonic() - since)))
        if thread.is_alive():
            return HealthResult(name, False, f"health check {manifest.health} still running after "
                                f"{time.monotonic() - since:.0f} s (timeout {manifest.health_timeout:g} s)",
                                int((time.perf_counter() - started) * 1000), time.time())
    thread = threading.Thread(target=target, name=f"health-{name}", daemon=True)
    _health_running[name] = (thread, time.monotonic())
    thread.start()
    thread.join(manifest.health_timeout)
    elapsed = int((time.perf_counter() - started) * 1000)
    if thread.is_alive():
        return HealthResult(name, False, f"health check {manifest.health} timed out after "
                            f"{manifest.health_timeout:g} s", elapsed, time.time())
    _health_running.pop(name, None)
    if "error" in box:
        return HealthResult(name, False, f"health check {manifest.health} raised {box['error']}", elapsed, time.time())
    healthy, message = box["value"]
    return HealthResult(name, healthy, message, elapsed, time.time())


def check_health(engine: Engine, info: ModuleInfo, *, max_age: float = HEALTH_MAX_AGE) -> HealthResult:
    """Is the module usable: available, enabled, migrations applied, and its own health function passes."""
    if info.status == "unavailable":
        return HealthResult(info.name, False, info.error or "unavailable")
    if not info.enabled:
        return HealthResult(info.name, None, "disabled (not checked)")
    pending, problem = pending_migrations(engine, info)
    if problem or pending:
        return HealthResult(info.name, False, problem or f"migrations not applied: {', '.join(pending)}")
    if info.manifest.health is None:
        return HealthResult(info.name, True, "no health check defined; migrations applied")
    cached = _health_cache.get(info.name)
    if cached is not None and time.time() - cached.checked_at < max_age:
        return cached
    result = _run_health_function(info.manifest)
    _health_cache[info.name] = result
    return result


# --------------------------------------------------------------------------------------------------------------
# Page views and page failures
# --------------------------------------------------------------------------------------------------------------

_views: dict[tuple[str, str], tuple[int, datetime]] = {}  # (module, page) → views in this process, last view


def record_page_view(engine: Engine, module: str, page: str, error: str | None = None) -> None:
    """Note a view of a module page; `error` is the failure it showed (None: it rendered).

    Viewing is a read: views are counted in this process only, and the database is written only when the
    page's failure state changes (a new error, or the first good view after one).
    """
    now = _now()
    count = _views.get((module, page), (0, now))[0]
    _views[(module, page)] = (count + 1, now)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT last_error FROM module_page_views WHERE module = :m AND page = :p"),
                              {"m": module, "p": page}).first()
        conn.rollback()
    if (stored[0] if stored else None) == error:
        return
    with write_transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO module_page_views (module, page, views, last_viewed_at, last_error, last_error_at) "
                "VALUES (:m, :p, 0, :at, :err, :err_at) ON CONFLICT (module, page) DO UPDATE SET "
                "last_viewed_at = excluded.last_viewed_at, last_error = excluded.last_error, "
                "last_error_at = excluded.last_error_at"
            ),
            {"m": module, "p": page, "at": now, "err": error, "err_at": now if error else None},
        )


def page_views(engine: Engine) -> dict[str, dict[str, dict]]:
    """module → page → {views (in this process), last_viewed_at, last_error, last_error_at}."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT module, page, views, last_viewed_at, last_error, last_error_at FROM module_page_views"
        )).mappings().all()
        conn.rollback()
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        out.setdefault(r["module"], {})[r["page"]] = {**dict(r), "views": 0}
    for (module, page), (count, at) in _views.items():
        row = out.setdefault(module, {}).setdefault(page, {"last_error": None, "last_error_at": None})
        row.update(views=count, last_viewed_at=at)
    return out


# --------------------------------------------------------------------------------------------------------------
# Config: module.json defaults, overridden by MODULES__{NAME}__{KEY}
# --------------------------------------------------------------------------------------------------------------

def _manifest_of(name: str) -> Manifest | None:
    if not NAME_PATTERN.match(name):
        return None
    m = _load_cached(modules_dir() / name)
    return m if isinstance(m, Manifest) else None


def _env_prefix(name: str) -> str:
    return f"MODULES__{name.upper()}__"


def _stored_settings(name: str, engine: Engine | None = None) -> dict[str, Any]:
    """key → value saved on the Modules page (JSON in module_settings); {} before migration 011."""
    try:
        with (engine or get_engine()).connect() as conn:
            rows = conn.execute(text("SELECT key, value FROM module_settings WHERE module = :m"), {"m": name}).all()
            conn.rollback()
    except Exception:  # noqa: BLE001 - no settings table (yet): the defaults hold
        return {}
    return {k: parse_json_value(v) for k, v in rows if v is not None}


def get_module_config(name: str, key: str, default: Any = None, *, engine: Engine | None = None) -> Any:
    """A module's setting, first found of: `MODULES__{NAME}__{KEY}` (environment, .env, secrets.toml; parsed as
    JSON when it parses), the value saved on the Modules page, module.json (`settings` default, then `config`),
    `default`. Read on every call, so a change takes effect on the next rerun."""
    raw = raw_setting(f"{_env_prefix(name)}{key.upper()}")
    if raw is not None:
        return parse_json_value(raw)
    stored = _stored_settings(name, engine)
    if key in stored:
        return stored[key]
    manifest = _manifest_of(name)
    if manifest is not None:
        spec = next((s for s in manifest.settings if s.key == key), None)
        if key in manifest.config:
            return manifest.config[key]
        if spec is not None and spec.default is not None:
            return spec.default
    return default


def is_secret(key: str) -> bool:
    return is_secret_name(key)


def module_config(name: str, *, masked: bool = True, engine: Engine | None = None) -> dict[str, dict[str, Any]]:
    """Every setting in effect: key → {value, source, type, description, locked, …}; secrets masked unless asked.

    `source` is module.json, "saved" (Modules page) or the environment variable's name; `locked` is true when
    an environment variable decides (it wins, so the page cannot change it).
    """
    manifest = _manifest_of(name)
    out: dict[str, dict[str, Any]] = {}
    specs = {s.key: s for s in manifest.settings} if manifest else {}
    for key, spec in specs.items():
        value = manifest.config.get(key, spec.default)
        out[key] = {"value": value, "source": "module.json", "locked": False}
    for key, value in (manifest.config if manifest else {}).items():
        out.setdefault(key, {"value": value, "source": "module.json", "locked": False})
    for key, value in _stored_settings(name, engine).items():
        if key in out:
            out[key].update(value=value, source="saved")
    prefix = _env_prefix(name)
    for env_name, raw in sorted(raw_settings_with_prefix(prefix).items()):
        key = env_name[len(prefix):]
        out.setdefault(key, {})
        out[key].update(value=parse_json_value(raw), source=env_name, locked=True)
    for key, entry in out.items():
        spec = specs.get(key)
        entry.update(type=spec.type if spec else "config", description=spec.description if spec else "",
                     min=spec.min if spec else None, max=spec.max if spec else None,
                     choices=list(spec.choices) if spec else [], editable=spec is not None)
        secret = is_secret(key) or (spec is not None and spec.type == "secret")
        entry["secret"] = secret
        if masked and secret:
            entry["value"] = MASK if entry["value"] not in (None, "") else None
    return out


def validate_setting(spec: Any, value: Any) -> Any:
    """The value converted to the setting's type; InputError with the rule it breaks."""
    where = f"setting {spec.key}"
    if isinstance(value, str) and spec.type in ("bool", "int", "float"):
        text_value = value.strip()
        if spec.type == "bool":
            lowered = text_value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise InputError(f"{where}: expected true or false, got {value!r}")
            value = lowered in ("true", "1", "yes", "on")
        else:
            try:
                value = int(text_value) if spec.type == "int" else float(text_value)
            except ValueError:
                raise InputError(f"{where}: expected {'a whole number' if spec.type == 'int' else 'a number'}, "
                                 f"got {value!r}") from None
    if spec.type == "bool" and not isinstance(value, bool):
        raise InputError(f"{where}: expected true or false, got {value!r}")
    if spec.type in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, int | float) or (spec.type == "int"
                                                                             and not float(value).is_integer()):
            raise InputError(f"{where}: expected {'a whole number' if spec.type == 'int' else 'a number'}, "
                             f"got {value!r}")
        value = int(value) if spec.type == "int" else float(value)
        if spec.min is not None and value < spec.min or spec.max is not None and value > spec.max:
            raise InputError(f"{where}: {value} is outside {spec.min if spec.min is not None else '…'}"
                             f"–{spec.max if spec.max is not None else '…'}")
    if spec.type == "choice" and value not in spec.choices:
        raise InputError(f"{where}: expected one of {', '.join(spec.choices)}, got {value!r}")
    if spec.type in ("str", "secret"):
        if not isinstance(value, str):
            raise InputError(f"{where}: expected text, got {value!r}")
        if len(value) > 2000:
            raise InputError(f"{where}: at most 2000 characters")
    return value


def set_module_setting(engine: Engine, name: str, key: str, value: Any, actor: Actor) -> dict[str, Any]:
    """Save one setting; see save_module_settings."""
    result = save_module_settings(engine, name, {key: value}, actor)
    return {"run_id": result["run_id"], "key": key, "changed": bool(result["changed"])}


def save_module_settings(engine: Engine, name: str, values: dict[str, Any], actor: Actor) -> dict[str, Any]:
    """Validate every value, then save the ones that differ as one audited run (admin only): `undo RUN`
    puts them all back. Nothing is saved if one is invalid or locked by the environment (it would win anyway).

    Returns {run_id, changed: [keys]}; a secret's value is never returned nor put in the run's parameters.
    """
    from lib.audit import insert_row, update_row
    from lib.runs import job_run

    require_role(actor.role, "admin", "change module settings")
    manifest = _manifest_of(name)
    if manifest is None:
        raise InputError(f"no usable module named {name!r} in {modules_dir()}")
    specs = {s.key: s for s in manifest.settings}
    clean: dict[str, str] = {}
    problems: list[str] = []
    for key, value in values.items():
        spec = specs.get(key)
        if spec is None:
            problems.append(f"module {name} has no setting {key!r} (settings: {', '.join(specs)})")
            continue
        env_name = f"{_env_prefix(name)}{key}"
        if raw_setting(env_name) is not None:
            problems.append(f"setting {key} of {name} is locked: {env_name} is set in the environment (it wins)")
            continue
        try:
            clean[key] = json.dumps(validate_setting(spec, value), ensure_ascii=False)
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        raise InputError("; ".join(problems))
    with engine.connect() as conn:
        rows = {k: (i, v) for i, k, v in conn.execute(
            text("SELECT id, key, value FROM module_settings WHERE module = :m"), {"m": name})}
    changed = [k for k, v in clean.items() if k not in rows or rows[k][1] != v]
    if not changed:
        return {"run_id": None, "changed": []}
    shown = {k: ("(secret)" if specs[k].type == "secret" or is_secret(k) else json.loads(clean[k])) for k in changed}
    with job_run(engine, "module-settings", user=actor.email, dry_run=False,
                 parameters={"module": name, "values": shown}) as run:
        with write_transaction(engine) as conn:
            for key in changed:
                if specs[key].type == "secret" or is_secret(key):
                    # a secret never enters the audit log (the Runs page shows its rows): saved, not undoable
                    conn.execute(text(
                        "INSERT INTO module_settings (module, key, value, created_at, updated_at) "
                        "VALUES (:m, :k, :v, :at, :at) ON CONFLICT (module, key) DO UPDATE SET "
                        "value = excluded.value, updated_at = excluded.updated_at"),
                        {"m": name, "k": key, "v": clean[key], "at": _now()})
                elif key in rows:
                    update_row(conn, "module_settings", rows[key][0], {"value": clean[key]}, run_id=run.id,
                               user=actor.email)
                else:
                    insert_row(conn, "module_settings", {"module": name, "key": key, "value": clean[key]},
                               run_id=run.id, user=actor.email)
        run.finish({"module": name, "changed": changed})
    return {"run_id": run.id, "changed": changed}


@contextmanager
def module_connection(name: str, engine: Engine | None = None) -> Iterator[Connection]:
    """A transaction for module code, confined like its migrations (its role on PostgreSQL, the authorizer on
    SQLite): it sees its own tables and the core tables it declared in `reads`. Commits at the end.

    The connection is closed for good afterwards (never back into the pool with the module's session state).
    """
    engine = engine or get_engine()
    manifest = _manifest_of(name)
    if manifest is None:
        raise InputError(f"no usable module named {name!r}")
    conn = engine.connect()
    try:
        with conn.begin():
            with module_session(conn, Sandbox(name, manifest.table_prefix, manifest.reads)):
                yield conn
    finally:
        conn.invalidate()
        conn.close()


def module_code(module: str, relative: str):
    """Import one Python file of the module's folder (its own helpers: `module_code("cvr_watch", "watch.py")`)."""
    manifest = _manifest_of(module)
    if manifest is None:
        raise InputError(f"no usable module named {module!r}")
    return load_module_file(manifest, relative, PurePosixPath(relative).stem)


def module_prefix(module: str) -> str:
    """The prefix every table of the module starts with (`table_prefix` in module.json, `<name>_` by default)."""
    manifest = _manifest_of(module)
    return manifest.table_prefix if manifest else f"{module}_"


def module_table(module: str, table: str) -> str:
    """The full name of one of the module's tables: `module_table("crm_tools", "notes")` → `crm_tools_notes`."""
    if not re.fullmatch(r"[a-z0-9_]+", table):
        raise InputError(f"table name {table!r}: use lower-case letters, digits and _")
    return f"{module_prefix(module)}{table}"


def audited_update(conn: Connection, module: str, table: str, row_id: int, values: dict[str, Any], *,
                   run_id: int, user: str) -> dict[str, tuple[Any, Any]]:
    """Update one row of the module's own table and log each changed field in the audit log (`changes`), in the
    same transaction, so undoing the run (`manage.py undo RUN_ID`, the Runs page) puts the old values back.

    `conn` is the module's confined connection (the one a job's write_row gets, or `module_connection`); `table`
    the short name (`"items"`); `run_id` the job's run (`ctx.run_id`). On PostgreSQL the entry is written by
    `hub_log_change` (migration 019), which accepts only tables the module's role owns. Returns
    {field: (old, new)} of the fields that changed; LookupError when the row does not exist.
    """
    full = module_table(module, table)
    if run_id is None:
        raise InputError("audited_update needs the run's id (ctx.run_id); a preview writes nothing")
    columns = AUDITED_TABLES.get(full) or audit_module_table(conn, full)
    if set(values) - set(columns):  # a column added by a later migration: read the table again
        columns = audit_module_table(conn, full)
    if not values or set(values) - set(columns):
        raise InputError(f"{full}: no such column(s) to update: {', '.join(sorted(set(values) - set(columns)))}")
    row = conn.execute(text(f"SELECT {', '.join(values)} FROM {full} WHERE id = :id"), {"id": row_id}).mappings().first()
    if row is None:
        raise LookupError(f"{full} row {row_id} does not exist")
    changed = {f: (row[f], v) for f, v in values.items() if normal_value(row[f]) != normal_value(v)}
    if not changed:
        return {}
    stamp = "" if full in unstamped_tables() else ", updated_at = CURRENT_TIMESTAMP"
    conn.execute(text(f"UPDATE {full} SET {', '.join(f'{f} = :{f}' for f in changed)}{stamp} WHERE id = :id"),
                 {**{f: new for f, (_, new) in changed.items()}, "id": row_id})
    now = utcnow()
    for name, (old, new) in changed.items():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT hub_log_change(:run, :t, :row, 'update', :f, :old, :new, :u)"),
                         {"run": run_id, "t": full, "row": row_id, "f": name, "old": encode_value(old),
                          "new": encode_value(new), "u": user})
        else:
            log_change(conn, run_id, full, row_id, "update", name, old, new, user, now)
    return changed


# --------------------------------------------------------------------------------------------------------------
# Reports for the Modules page and `manage.py modules`
# --------------------------------------------------------------------------------------------------------------

def navigable(registry: Registry, role: str) -> list[ModuleInfo]:
    """Enabled, available modules with pages that `role` may see, dependencies first."""
    return [i for i in registry.active() if i.manifest.pages and has_role(role, i.manifest.required_role)]


def module_report(engine: Engine, *, with_health: bool = False) -> list[dict[str, Any]]:
    """One dict per discovered module: what `modules list --json` prints and the Modules page draws."""
    registry = load_registry(engine)
    views = page_views(engine) if registry.system_enabled else {}
    out = []
    for info in sorted(registry.modules.values(), key=lambda i: i.name):
        m = info.manifest
        pending, problem = pending_migrations(engine, info)
        page_rows = views.get(info.name, {})
        page_errors = {p: r["last_error"] for p, r in page_rows.items() if r["last_error"]}
        status_, error = info.status, info.error
        if status_ == "enabled" and (page_errors or problem):
            status_ = "failed"
            error = problem or "; ".join(f"{p}: {e}" for p, e in page_errors.items())
        row: dict[str, Any] = {
            "name": info.name,
            "version": info.version,
            "enabled": info.enabled,
            "status": status_,
            "error": error,
            "title": m.title if m else info.name,
            "description": m.description if m else None,
            "author": m.author if m else None,
            "installed_version": info.state.installed_version if info.state else None,
            "dependencies": info.dependencies,
            "dependants": registry.dependants_of(info.name),
            "pending_migrations": pending,
            "required_role": m.required_role if m else None,
            "table_prefix": m.table_prefix if m else None,
            "pages": [{"file": p.file, "title": p.title, "url_path": page_url_path(info.name, p.slug),
                       "views": page_rows.get(p.file, {}).get("views", 0)} for p in (m.pages if m else ())],
            "page_views": sum(r["views"] for r in page_rows.values()),
            "page_errors": page_errors,
            "config": module_config(info.name, engine=engine) if m else {},
            "warnings": list(m.warnings) if m else [],
            "changed_at": info.state.changed_at if info.state else None,
            "changed_by": info.state.changed_by if info.state else None,
            "path": str(info.folder),
        }
        if with_health:
            h = check_health(engine, info)
            row["health"] = {"healthy": h.healthy, "message": h.message, "duration_ms": h.duration_ms}
        out.append(row)
    return out


def health_report(engine: Engine) -> list[dict[str, Any]]:
    """`modules health --json`: one {name, healthy, message, status, duration_ms} per discovered module."""
    registry = load_registry(engine)
    out = []
    for info in sorted(registry.modules.values(), key=lambda i: i.name):
        h = check_health(engine, info, max_age=0)
        out.append({"name": info.name, "healthy": h.healthy, "message": h.message, "status": info.status,
                    "enabled": info.enabled, "duration_ms": h.duration_ms})
    return out


def page_url_path(module: str, slug: str) -> str:
    return f"mod_{module}_{slug}"


def dependency_graph_dot(rows: Iterable[dict[str, Any]]) -> str:
    """Graphviz DOT of modules (coloured by status) and their dependencies (arrow: needs)."""
    colours = {"enabled": "palegreen", "disabled": "lightgrey", "failed": "salmon", "unavailable": "orange"}
    lines = ["digraph modules {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="sans-serif"];']
    known = set()
    for r in rows:
        known.add(r["name"])
        label = f"{r['name']}\\n{r['version'] or '?'} · {r['status']}"
        lines.append(f'  "{r["name"]}" [label="{label}", fillcolor="{colours.get(r["status"], "white")}"];')
    for r in rows:
        for dep in r["dependencies"]:
            target = DEPENDENCY.match(dep).group("name")
            if target not in known:
                lines.append(f'  "{target}" [label="{target}\\nmissing", fillcolor="white", style="dashed"];')
                known.add(target)
            lines.append(f'  "{r["name"]}" -> "{target}" [label="{dep[len(target):]}"];')
    lines.append("}")
    return "\n".join(lines)
