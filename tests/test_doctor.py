"""`manage.py doctor`: a healthy setup passes, each kind of breakage is named with the right exit code."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import text

from lib import config
from lib.audit import utcnow
from lib.cli import main
from lib.migrations import CORE_MIGRATIONS_DIR, status
from lib.modules import enable_module, forget_discovery
from lib.roles import Actor
from lib.runs import start_run
from lib.sandbox import running_economic
from tests.conftest import ROOT
from tests.metadata_server import provider_metadata, serving

FIXTURE_MODULES = ROOT / "tests" / "fixtures" / "modules"
COMPLETE_AUTH = """
[auth]
redirect_uri = "https://hub.example.dk/oauth2callback"
cookie_secret = "a-long-random-cookie-secret"
client_id = "hub"
client_secret = "client-secret-value"
server_metadata_url = "https://login.example.dk/.well-known/openid-configuration"
"""

ADMIN = Actor("t", "admin")


def doctor(capsys, *extra: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


@pytest.fixture
def economic_ok(monkeypatch):
    """e-conomic configured against a running simulator that accepts the tokens."""
    with running_economic(demo=True) as sim:
        monkeypatch.setenv("ECONOMIC_API_URL", sim.url)
        monkeypatch.setenv("ECONOMIC_APP_SECRET_TOKEN", sim.app_secret_token)
        monkeypatch.setenv("ECONOMIC_AGREEMENT_GRANT_TOKEN", sim.agreement_grant_token)
        yield sim


@pytest.fixture
def modules_dir(tmp_path, monkeypatch):
    """Two fixture modules (one healthy, one whose health check raises) as MODULES_DIR."""
    folder = tmp_path / "modules"
    for name in ("good", "raising_health"):
        shutil.copytree(FIXTURE_MODULES / name, folder / name)
    monkeypatch.setenv("MODULES_DIR", str(folder))
    forget_discovery()
    yield folder
    forget_discovery()


@pytest.fixture
def secrets_toml(tmp_path, monkeypatch):
    """Write .streamlit/secrets.toml in a config root of the test's own."""
    root = tmp_path / "config-root"
    (root / ".streamlit").mkdir(parents=True)
    monkeypatch.setattr(config, "CONFIG_ROOT", root)
    config.reload_files()

    def write(content: str) -> None:
        (root / ".streamlit" / "secrets.toml").write_text(content, encoding="utf-8")
        config.reload_files()

    return write


def test_healthy_setup_passes(engine, economic_ok, modules_dir, secrets_toml, capsys):
    """Database, migrations, a healthy enabled module, a working integration, complete sign-in: exit 0."""
    enable_module(engine, "good", ADMIN)
    with serving(provider_metadata()) as idp:  # the provider's metadata URL must answer
        secrets_toml(COMPLETE_AUTH.replace("https://login.example.dk", idp))
        code, report = doctor(capsys)
    checks = by_name(report)
    assert code == 0 and report["ok"] is True, report
    assert checks["database"]["status"] == "ok" and engine.dialect.name in checks["database"]["message"]
    assert checks["migrations"]["status"] == "ok" and "none pending" in checks["migrations"]["message"]
    assert checks["module_migrations"]["status"] == "ok"
    assert checks["modules"]["status"] == "ok" and "good" in checks["modules"]["message"]
    assert checks["integration:economic"]["status"] == "ok"
    assert checks["integration:cvr"] == {"name": "integration:cvr", "status": "ok",
                                         "message": checks["integration:cvr"]["message"]}
    assert "not configured" in checks["integration:cvr"]["message"]
    assert checks["auth"]["status"] == "ok"
    assert checks["runs"] == {"name": "runs", "status": "ok", "message": "no run in progress"}
    assert economic_ok.app_secret_token not in json.dumps(report)


def test_human_output_is_one_line_per_check(engine, capsys):
    code = main(["doctor"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0].startswith("ok    database")
    assert any(line.startswith("warn  auth") for line in out)
    assert out[-1].endswith("warning(s)")


def test_unreachable_database_exits_2_with_one_line(tmp_path):
    """The real command line: exit 2, one line on stderr, and --json still prints one object."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT),
           "DATABASE_URL": "postgresql+psycopg2://hub:pw-Hidden1@127.0.0.1:1/hub"}
    done = subprocess.run([sys.executable, "manage.py", "doctor", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "cannot connect to DATABASE_URL" in done.stderr
    message = done.stderr.strip().removeprefix("error: ")
    assert json.loads(done.stdout) == {"ok": False, "error": message, "checks": [
        {"name": "database", "status": "fail", "message": message}]}
    assert "pw-Hidden1" not in done.stdout + done.stderr


def test_unparsable_database_url_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "not a url")
    assert main(["doctor"]) == 2
    assert "DATABASE_URL" in capsys.readouterr().err


def test_changed_applied_migration_fails(engine, capsys):
    """An applied file whose checksum no longer matches (edited after it ran) is a failure: exit 1."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE module_migrations SET checksum = 'edited' WHERE module = 'core' AND version = 3"))
    code, report = doctor(capsys)
    check = by_name(report)["migrations"]
    assert code == 1 and report["ok"] is False
    assert check["status"] == "fail" and "003_customers_subscriptions_locked.sql" in check["message"]
    assert "changed" in check["message"]


def test_failing_integration_fails(engine, economic_ok, monkeypatch, capsys):
    monkeypatch.setenv("ECONOMIC_APP_SECRET_TOKEN", "revoked-token-123")
    code, report = doctor(capsys)
    check = by_name(report)["integration:economic"]
    assert code == 1 and check["status"] == "fail", check
    assert "revoked-token-123" not in json.dumps(report)


def test_unhealthy_enabled_module_fails(engine, modules_dir, capsys):
    enable_module(engine, "raising_health", ADMIN)
    code, report = doctor(capsys)
    check = by_name(report)["modules"]
    assert code == 1 and check["status"] == "fail"
    assert "raising_health" in check["message"] and "database unreachable" in check["message"]


def test_require_login_without_auth_section_fails(engine, monkeypatch, secrets_toml, capsys):
    monkeypatch.setenv("REQUIRE_LOGIN", "true")
    secrets_toml('CVR_USER_AGENT = "x"\n')
    code, report = doctor(capsys)
    assert code == 1 and by_name(report)["auth"]["status"] == "fail"
    assert "REQUIRE_LOGIN" in by_name(report)["auth"]["message"]
    with serving(provider_metadata()) as idp:
        secrets_toml(COMPLETE_AUTH.replace("https://login.example.dk", idp))
        code, report = doctor(capsys)
    assert by_name(report)["auth"] == {"name": "auth", "status": "ok", "message": "sign-in required"}
    assert code == 0


def test_incomplete_auth_section_names_what_is_missing(engine, secrets_toml, capsys):
    secrets_toml('[auth]\nredirect_uri = "https://hub/oauth2callback"\n[auth.microsoft]\nclient_id = "x"\n')
    code, report = doctor(capsys)
    message = by_name(report)["auth"]["message"]
    assert code == 1 and "cookie_secret" in message and "microsoft.client_secret" in message


def test_pending_migrations_warn_and_are_not_applied(db_url, capsys):
    """An empty database: pending migrations are a warning (exit 0), and the doctor leaves them pending."""
    code, report = doctor(capsys)
    checks = by_name(report)
    assert code == 0 and checks["migrations"]["status"] == "warn" and "pending" in checks["migrations"]["message"]
    assert checks["runs"]["status"] == "warn"
    from lib.db import get_engine

    assert all(s.state == "pending" for s in status(get_engine(db_url), CORE_MIGRATIONS_DIR))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_runs_are_reported(engine, capsys):
    """A run whose process is gone, and one on another host without heartbeat: both named as stale."""
    alive = start_run(engine, "cvr-lookup", user="ann")
    code, report = doctor(capsys)
    assert by_name(report)["runs"]["status"] == "ok" and f"cvr-lookup run {alive.id}" in by_name(report)["runs"]["message"]

    dead = start_run(engine, "economic-relink", user="cron")
    remote = start_run(engine, "crm-sync", user="cron")
    old = utcnow() - timedelta(hours=2)
    with engine.begin() as conn:
        conn.execute(text("UPDATE run_locks SET owner = :o WHERE run_id = :r"),
                     {"o": f"{socket.gethostname()}:{_dead_pid()}", "r": dead.id})
        conn.execute(text("UPDATE run_locks SET owner = 'replica-b:4242', heartbeat_at = :t WHERE run_id = :r"),
                     {"t": old, "r": remote.id})
    code, report = doctor(capsys)
    check = by_name(report)["runs"]
    assert code == 0 and check["status"] == "warn"
    assert f"economic-relink run {dead.id}" in check["message"] and "is gone" in check["message"]
    assert f"crm-sync run {remote.id}" in check["message"] and "no heartbeat since" in check["message"]
    assert f"cvr-lookup run {alive.id}" not in check["message"]


def test_audit_entries_whose_run_is_missing_fail(engine, capsys):
    """`changes.run_id` has no foreign key (migration 007): the doctor is what notices a deleted run."""
    run = start_run(engine, "import-subscriptions", user="ann")
    run.finish()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO changes (run_id, table_name, row_id, action, field, changed_by) "
                          "VALUES (:r, 'customers', 1, 'update', 'name', 'ann')"), {"r": run.id})
    code, report = doctor(capsys)
    assert by_name(report)["audit_log"]["status"] == "ok"
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO changes (run_id, table_name, row_id, action, field, changed_by) "
                          "VALUES (:r, 'customers', 1, 'update', 'name', 'ann')"), {"r": run.id + 1000})
    code, report = doctor(capsys)
    check = by_name(report)["audit_log"]
    assert code == 1 and check["status"] == "fail"
    assert check["message"].startswith(f"1 audit entries name a run that does not exist (the first: run {run.id + 1000})")
