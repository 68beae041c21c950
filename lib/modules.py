"""The module registry: discover `MODULES_DIR/<name>/module.json`, resolve dependencies, keep state in the database.

Nothing here is ever half-done: enabling applies the module's migrations (each file atomic, see
lib.migrations) and only then flips `module_state.enabled` in one row write, so an interrupted enable is
finished by enabling again. Disabling is one row write; removing data is one transaction.

The module API (what module code may import) is small: get_module_config, module_table, and lib.db.get_engine.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from lib import __version__ as HUB_VERSION
from lib.config import get_settings, parse_json_value, raw_setting, raw_settings_with_prefix
from lib.db import write_transaction
from lib.errors import HubError, InputError
from lib.migrations import (
    MigrationError,
    MigrationFile,
    MigrationStatus,
    discover,
    ensure_core_schema,
    migrate,
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
from lib.module_tables import migration_guard, owned_tables, prefix_clash
from lib.roles import has_role
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
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "KEY")
MASK = "••••••"
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
    found = {folder.name: _load_cached(folder) for folder in _module_folders(directory)}
    _scan_cache[directory] = found
    return found


def forget_discovery() -> None:
    """Drop every cached manifest (tests, or after MODULES_AUTO_RELOAD=false edits)."""
    _manifest_cache.clear()
    _scan_cache.clear()
    _resolved.clear()
    _health_cache.clear()


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
        info = ModuleInfo(m.name, m.folder, m, state.enabled if state else m.enabled, state=state)
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
    return {r[0]: ModuleState(r[0], bool(r[1]), *r[2:]) for r in rows}


def load_registry(engine: Engine, *, first_discovery: bool = True) -> Registry:
    """Every discovered module with its status. Cheap enough for every rerun (one small query).

    A module seen for the first time gets its state row; `enabled: true` in module.json enables it then
    (migrations first), and never again afterwards.
    """
    directory = modules_dir()
    if not get_settings().modules_enabled:
        return Registry(directory, False, {})
    ensure_core_schema(engine)
    manifests = discover_manifests(directory)
    states = _read_states(engine)
    modules = _resolve_snapshot(manifests, states, directory)
    if first_discovery:
        new = [i for i in modules.values() if i.manifest and i.state is None and not i.reasons]
        if new:
            for info in new:
                _first_seen(engine, info, directory)
            modules = _resolve_snapshot(manifests, _read_states(engine), directory)
    return Registry(directory, True, modules)


def _first_seen(engine: Engine, info: ModuleInfo, directory: Path) -> None:
    if info.manifest.enabled:
        try:
            enable_module(engine, info.name, actor="system (first discovery)")
        except HubError:
            pass  # enable_module recorded the reason; the module stays disabled
    else:
        _write_state(engine, info.name, enabled=False, installed_version=None, actor="system (first discovery)",
                     only_if_missing=True)


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


def _migrate_module(engine: Engine, registry: Registry, info: ModuleInfo) -> list[MigrationFile]:
    """Apply the module's pending migrations after checking every pending statement against its prefix."""
    folder = info.folder / "migrations"
    guard = migration_guard(info.name, registry.prefixes)
    for f in discover(folder, engine.dialect.name, info.name):
        for statement in split_sql(f.read()):
            guard(f, statement)
    return migrate(engine, folder, info.name, guard=guard)


def enable_module(engine: Engine, name: str, actor: str) -> list[MigrationFile]:
    """Apply pending migrations, then mark enabled. Refused (InputError) when the module is unavailable;
    a failing migration rolls back, is recorded as the module's error and re-raised (MigrationError)."""
    registry = load_registry(engine, first_discovery=False)
    if not registry.system_enabled:
        raise InputError("the module system is switched off (MODULES_ENABLED=false)")
    info = registry.require(name)
    if info.reasons:
        raise InputError(f"module {name} cannot be enabled: {info.error}")
    try:
        applied = _migrate_module(engine, registry, info)
    except HubError as exc:
        _record_error(engine, name, str(exc), actor)
        raise
    _write_state(engine, name, enabled=True, installed_version=info.manifest.version, actor=actor)
    _health_cache.pop(name, None)
    return applied


def disable_module(engine: Engine, name: str, actor: str) -> list[str]:
    """Mark the module disabled; returns the enabled dependants that become unavailable with it."""
    registry = load_registry(engine, first_discovery=False)
    info = registry.get(name)
    states = _read_states(engine)
    if info is None and name not in states:
        raise InputError(f"no module named {name!r} in {registry.directory}")
    going_down = [d for d in registry.dependants_of(name) if registry.modules[d].enabled] if info else []
    installed = states[name].installed_version if name in states else None
    _write_state(engine, name, enabled=False, installed_version=installed, actor=actor)
    return going_down


@dataclass(frozen=True)
class RemovalPlan:
    module: str
    tables: list[str]
    views: list[str]
    migration_rows: int

    @property
    def empty(self) -> bool:
        return not (self.tables or self.views or self.migration_rows)


def removal_plan(engine: Engine, name: str) -> RemovalPlan:
    """Exactly what `remove_module_data` would drop; refused unless the module is disabled."""
    registry = load_registry(engine, first_discovery=False)
    states = _read_states(engine)
    if not NAME_PATTERN.match(name) or (registry.get(name) is None and name not in states):
        raise InputError(f"no module named {name!r} in {registry.directory}")
    if name in states and states[name].enabled:
        raise InputError(f"module {name} is enabled: disable it before removing its data")
    prefixes = registry.prefixes
    prefixes.setdefault(name, f"{name}_")
    inspector = inspect(engine)
    tables = owned_tables(name, inspector.get_table_names(), prefixes)
    views = owned_tables(name, inspector.get_view_names(), prefixes)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM module_migrations WHERE module = :m"), {"m": name}).scalar()
    return RemovalPlan(name, tables, views, int(rows or 0))


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


def remove_module_data(engine: Engine, name: str, expected: RemovalPlan, actor: str) -> RemovalPlan:
    """Drop the module's own tables and views and forget its migrations, in one transaction.

    `expected` is the plan the user confirmed; if the database changed since, nothing is dropped.
    """
    plan = removal_plan(engine, name)
    if (plan.tables, plan.views) != (expected.tables, expected.views):
        raise InputError(f"module {name}: the tables changed since they were shown ({', '.join(plan.tables)}); "
                         "review the list again")
    quote = engine.dialect.identifier_preparer.quote
    order = _drop_order(engine, plan.tables)
    with write_transaction(engine) as conn:
        for view in plan.views:
            conn.exec_driver_sql(f"DROP VIEW IF EXISTS {quote(view)}")
        for table in order:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {quote(table)}")
        conn.execute(text("DELETE FROM module_migrations WHERE module = :m"), {"m": name})
        conn.execute(
            text("UPDATE module_state SET installed_version = NULL, changed_at = :at, changed_by = :by "
                 "WHERE name = :m"),
            {"m": name, "at": _now(), "by": actor},
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
    """Filenames not yet applied (or failed), and a problem reading the folder if any."""
    if info.manifest is None:
        return [], None
    try:
        return [s.filename for s in status(engine, info.folder / "migrations", info.name)
                if s.state in ("pending", "failed", "changed")], None
    except HubError as exc:
        return [], str(exc)


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

def record_page_view(engine: Engine, module: str, page: str, error: str | None = None) -> None:
    """Count a view of a module page; `error` is the failure it showed (None clears the last one)."""
    now = _now()
    with write_transaction(engine) as conn:
        conn.execute(
            text(
                "INSERT INTO module_page_views (module, page, views, last_viewed_at, last_error, last_error_at) "
                "VALUES (:m, :p, 1, :at, :err, :err_at) ON CONFLICT (module, page) DO UPDATE SET "
                "views = module_page_views.views + 1, last_viewed_at = excluded.last_viewed_at, "
                "last_error = excluded.last_error, last_error_at = excluded.last_error_at"
            ),
            {"m": module, "p": page, "at": now, "err": error, "err_at": now if error else None},
        )


def page_views(engine: Engine) -> dict[str, dict[str, dict]]:
    """module → page → {views, last_viewed_at, last_error, last_error_at}."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT module, page, views, last_viewed_at, last_error, last_error_at FROM module_page_views"
        )).mappings().all()
    out: dict[str, dict[str, dict]] = {}
    for r in rows:
        out.setdefault(r["module"], {})[r["page"]] = dict(r)
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


def get_module_config(name: str, key: str, default: Any = None) -> Any:
    """A module's setting: `MODULES__{NAME}__{KEY}` (parsed as JSON when it parses), else module.json, else default."""
    raw = raw_setting(f"{_env_prefix(name)}{key.upper()}")
    if raw is not None:
        return parse_json_value(raw)
    manifest = _manifest_of(name)
    if manifest is not None and key in manifest.config:
        return manifest.config[key]
    return default


def is_secret(key: str) -> bool:
    return any(marker in key.upper() for marker in SECRET_MARKERS)


def module_config(name: str, *, masked: bool = True) -> dict[str, dict[str, Any]]:
    """Every config value in effect: key → {value, source}; secrets masked unless asked not to."""
    manifest = _manifest_of(name)
    out: dict[str, dict[str, Any]] = {}
    for key, value in (manifest.config if manifest else {}).items():
        out[key] = {"value": value, "source": "module.json"}
    prefix = _env_prefix(name)
    for env_name, raw in sorted(raw_settings_with_prefix(prefix).items()):
        out[env_name[len(prefix):]] = {"value": parse_json_value(raw), "source": env_name}
    if masked:
        for key, entry in out.items():
            if is_secret(key) and entry["value"] not in (None, ""):
                entry["value"] = MASK
    return out


def module_table(module: str, table: str) -> str:
    """The full name of one of the module's tables: `module_table("crm_tools", "notes")` → `crm_tools_notes`."""
    if not re.fullmatch(r"[a-z0-9_]+", table):
        raise InputError(f"table name {table!r}: use lower-case letters, digits and _")
    manifest = _manifest_of(module)
    prefix = manifest.table_prefix if manifest else f"{module}_"
    return f"{prefix}{table}"


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
            "config": module_config(info.name) if m else {},
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
