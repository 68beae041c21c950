"""`manage.py doctor`: is this installation usable? Database, migrations, modules, integrations, sign-in, runs.

The checks only read: pending migrations are reported, not applied, so a monitor never changes the schema.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib import config
from lib.config import Settings, get_settings
from lib.db import check_connection, get_engine
from lib.errors import ConfigError, HubError
from lib.integrations import integration_status, test_connection
from lib.migrations import CORE_MIGRATIONS_DIR, CORE_MODULE, MigrationStatus, status
from lib.runs import lock_is_stale
from lib.signin_check import check_signin

OK, WARN, FAIL = "ok", "warn", "fail"
# Streamlit's OIDC sign-in needs these in [auth]; client settings may sit in [auth] or in each [auth.NAME].
AUTH_KEYS = ("redirect_uri", "cookie_secret")
PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail
    message: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return not any(c.status == FAIL for c in self.checks)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks]}


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _guarded(name: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; an unexpected error is that check's failure, never the end of the report."""
    try:
        result = check()
    except HubError as exc:
        return [Check(name, FAIL, _first_line(exc))]
    except Exception as exc:  # noqa: BLE001 - the doctor reports every failure as a line, never a traceback
        return [Check(name, FAIL, f"{type(exc).__name__}: {_first_line(exc)}")]
    return result if isinstance(result, list) else [result]


def check_database(settings: Settings) -> tuple[Check, Engine | None]:
    """Connect and ask the server its version; an unusable DATABASE_URL is a configuration error."""
    try:
        engine = get_engine(settings.database_url)
        check_connection(engine)
        with engine.connect() as conn:
            version = conn.execute(text("SELECT sqlite_version()" if engine.dialect.name == "sqlite"
                                        else "SHOW server_version")).scalar()
    except ConfigError as exc:
        return Check("database", FAIL, str(exc)), None
    where = engine.url.render_as_string(hide_password=True)
    return Check("database", OK, f"connected to {engine.dialect.name} {version} ({where})"), engine


def _migration_check(name: str, rows: list[MigrationStatus]) -> Check:
    failed = [f"{r.module}/{r.filename}" for r in rows if r.state == "failed"]
    changed = [f"{r.module}/{r.filename}" for r in rows if r.state == "changed"]
    pending = [f"{r.module}/{r.filename}" for r in rows if r.state == "pending"]
    problems = []
    if changed:
        problems.append(f"changed after they were applied: {', '.join(changed)} (restore the original file and "
                        "add a new migration)")
    if failed:
        problems.append(f"failed, not applied: {', '.join(failed)} (fix the file, then python manage.py migrate)")
    if problems:
        return Check(name, FAIL, "; ".join(problems))
    if pending:
        return Check(name, WARN, f"{len(pending)} pending: {', '.join(pending)} (python manage.py migrate applies "
                                 "them; so does the next start of the app or of any command)")
    applied = sum(1 for r in rows if r.state == "applied")
    return Check(name, OK, f"{applied} applied, none pending" if rows else "no migration files")


def check_core_migrations(engine: Engine) -> Check:
    return _migration_check("migrations", status(engine, CORE_MIGRATIONS_DIR, CORE_MODULE))


def _modules_api():
    try:
        from lib import modules
    except ImportError:
        return None
    return modules


def check_module_migrations(engine: Engine) -> Check | None:
    modules = _modules_api()
    if modules is None or not hasattr(modules, "module_migration_status"):
        return None
    return _migration_check("module_migrations", modules.module_migration_status(engine))


def check_modules(engine: Engine, settings: Settings) -> Check | None:
    """Enabled modules must be healthy; a broken module that is not enabled is only a warning."""
    modules = _modules_api()
    if modules is None or not hasattr(modules, "health_report"):
        return None
    if not settings.modules_enabled:
        return Check("modules", OK, "module system switched off (MODULES_ENABLED=false)")
    rows = modules.health_report(engine)
    broken = [r for r in rows if r["enabled"] and r["healthy"] is False]
    unusable = [r for r in rows if not r["enabled"] and r["healthy"] is False]
    enabled = [r for r in rows if r["enabled"]]
    if broken:
        return Check("modules", FAIL, "; ".join(f"{r['name']}: {r['message']}" for r in broken))
    if unusable:
        return Check("modules", WARN, f"{len(enabled)} enabled and healthy; not usable: "
                                      + "; ".join(f"{r['name']}: {r['message']}" for r in unusable))
    if not enabled:
        return Check("modules", OK, f"no module enabled ({len(rows)} found)")
    return Check("modules", OK, f"{len(enabled)} enabled, all healthy: {', '.join(r['name'] for r in enabled)}")


def check_integrations(settings: Settings) -> list[Check]:
    """One cheap call per configured service; an unconfigured one is reported, not failed."""
    out = []
    for item in integration_status(settings):
        name = f"integration:{item.service}"
        if not item.configured:
            out.append(Check(name, OK, f"{item.label}: not configured (missing {', '.join(item.missing)})"))
            continue
        ok, message = test_connection(item.service, settings)
        out.append(Check(name, OK if ok else FAIL, message))
    return out


def _auth_problems(auth: dict) -> list[str]:
    missing = [k for k in AUTH_KEYS if not auth.get(k)]
    providers = {k: v for k, v in auth.items() if isinstance(v, dict)}
    if providers:
        for provider, section in providers.items():
            absent = [k for k in PROVIDER_KEYS if not section.get(k) and not auth.get(k)]
            missing += [f"{provider}.{k}" for k in absent]
    else:
        missing += [k for k in PROVIDER_KEYS if not auth.get(k)]
    return missing


def check_auth(settings: Settings) -> Check:
    """REQUIRE_LOGIN needs an [auth] section in .streamlit/secrets.toml with what Streamlit's sign-in needs."""
    path = config.CONFIG_ROOT / ".streamlit" / "secrets.toml"
    auth: dict = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            return Check("auth", FAIL, f"{path} is not valid TOML: {exc}")
        auth = data.get("auth") if isinstance(data.get("auth"), dict) else {}
    if not auth:
        if settings.require_login:
            return Check("auth", FAIL, f"REQUIRE_LOGIN is true but {path} has no [auth] section: the app refuses "
                                       "to start (see docs/SECURITY.md)")
        return Check("auth", WARN, "sign-in is not configured: whoever reaches the app is the local admin "
                                   "(set up [auth] and REQUIRE_LOGIN=true for a shared server)")
    missing = _auth_problems(auth)
    if missing:
        return Check("auth", FAIL, f"[auth] in {path} lacks {', '.join(missing)}")
    where = "required" if settings.require_login else "configured (REQUIRE_LOGIN is false)"
    return Check("auth", OK, f"sign-in {where}")


def check_runs(engine: Engine, settings: Settings) -> Check:
    """Runs still marked running: alive, or dead (the next run of that kind marks them stale and proceeds)."""
    stale_after = timedelta(seconds=settings.run_stale_seconds)
    with engine.connect() as conn:
        rows = conn.execute(text(
            # a preview holds no lock: its worker process (runs.worker) is its owner
            "SELECT r.id, r.kind, r.triggered_by, r.started_at, COALESCE(l.owner, r.worker) AS owner, "
            "COALESCE(l.heartbeat_at, r.heartbeat_at) AS heartbeat_at FROM runs r "
            "LEFT JOIN run_locks l ON l.run_id = r.id WHERE r.status = 'running' ORDER BY r.id"
        )).mappings().all()
    alive, dead = [], []
    for r in rows:
        why = "it holds no run lock" if r["owner"] is None else lock_is_stale(dict(r), stale_after)
        label = f"{r['kind']} run {r['id']} (by {r['triggered_by']}, owner {r['owner'] or '-'})"
        (dead if why else alive).append(f"{label}: {why}" if why else label)
    if dead:
        return Check("runs", WARN, f"stale: {'; '.join(dead)}. The next run of that kind marks it stale and "
                                   "proceeds; look at why the process died")
    if alive:
        return Check("runs", OK, f"{len(alive)} running: {'; '.join(alive)}")
    return Check("runs", OK, "no run in progress")


def check_audit_log(engine: Engine) -> Check:
    """Every audit entry that names a run names one that exists (`changes.run_id` has no foreign key)."""
    with engine.connect() as conn:
        missing, first = conn.execute(text(
            "SELECT count(*), min(c.run_id) FROM changes c WHERE c.run_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = c.run_id)"
        )).one()
    if missing:
        return Check("audit_log", FAIL, f"{missing} audit entries name a run that does not exist (the first: run "
                                        f"{first}); runs must never be deleted")
    return Check("audit_log", OK, "every audit entry's run exists")


def run_doctor(settings: Settings | None = None) -> Report:
    """Every check in order. exit_code: 2 when the settings or DATABASE_URL are unusable, 1 on any failure."""
    report = Report()
    try:
        settings = settings or get_settings()
    except ConfigError as exc:
        report.checks.append(Check("config", FAIL, str(exc)))
        report.exit_code = 2
        return report
    database, engine = check_database(settings)
    report.checks.append(database)
    if engine is None:
        report.exit_code = 2
        return report
    core = _guarded("migrations", lambda: check_core_migrations(engine))
    report.checks += core
    core_ready = core[0].status == OK
    if core_ready:
        for name, check in (("module_migrations", lambda: check_module_migrations(engine) or []),
                            ("modules", lambda: check_modules(engine, settings) or [])):
            report.checks += _guarded(name, check)
    else:
        report.checks.append(Check("modules", WARN, "not checked: the core migrations are not all applied"))
    report.checks += _guarded("integrations", lambda: check_integrations(settings))
    report.checks += _guarded("auth", lambda: check_auth(settings))
    report.checks += _guarded("signin", lambda: check_signin(settings))
    if core_ready:
        report.checks += _guarded("runs", lambda: check_runs(engine, settings))
        report.checks += _guarded("audit_log", lambda: check_audit_log(engine))
    else:
        report.checks.append(Check("runs", WARN, "not checked: the core migrations are not all applied"))
    report.exit_code = 0 if report.ok else 1
    return report
