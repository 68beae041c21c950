"""`manage.py migrate`, `runs` and `undo` as a user or cron runs them: subprocesses, JSON, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from lib.customers import create_customer, get_customer, update_customer
from tests.conftest import ROOT


def manage(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, cwd=ROOT)


def test_migrate_then_status_on_a_fresh_database(db_url):
    first = manage("migrate", "--json")
    assert first.returncode == 0, first.stderr
    applied = json.loads(first.stdout)["applied"]
    assert {a["module"] for a in applied} == {"core"} and len(applied) >= 4
    again = manage("migrate", "--json")
    assert json.loads(again.stdout) == {"applied": []}
    status = manage("migrate", "--status", "--json")
    assert status.returncode == 0
    assert {m["state"] for m in json.loads(status.stdout)["migrations"]} == {"applied"}


def test_runs_and_undo_round_trip(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    update_customer(engine, cid, {"city": "Aarhus"}, user="cli")
    runs = json.loads(manage("runs", "--json").stdout)["runs"]
    assert {"run_id", "kind", "status", "dry_run", "started_at", "finished_at", "stats"} <= set(runs[0])
    edit = runs[0]["run_id"]
    done = manage("undo", str(edit), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["undone_run_id"] == edit
    assert get_customer(engine, cid)["city"] is None
    twice = manage("undo", str(edit))
    assert twice.returncode == 2 and "already undone" in twice.stderr and len(twice.stderr.strip().splitlines()) == 1
    unknown = manage("undo", "99999")
    assert unknown.returncode == 2 and "no run with id 99999" in unknown.stderr


def test_undo_refuses_over_later_changes_unless_forced(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    update_customer(engine, cid, {"city": "Aarhus"}, user="cli")
    first = json.loads(manage("runs", "--json").stdout)["runs"][0]["run_id"]
    update_customer(engine, cid, {"city": "Odense"}, user="anna")
    refused = manage("undo", str(first), "--json")
    assert refused.returncode == 2 and f"customers#{cid}.city" in refused.stderr
    assert json.loads(refused.stdout)["conflicts"][0]["changed_by"] == "anna"
    assert get_customer(engine, cid)["city"] == "Odense"
    forced = manage("undo", str(first), "--force")
    assert forced.returncode == 0 and get_customer(engine, cid)["city"] is None


def test_unusable_database_url_is_a_configuration_error():
    for url in ("not a url", "postgresql+psycopg2://postgres@127.0.0.1:1/none", "nosuchdb://x"):
        result = manage("runs", env={"DATABASE_URL": url})
        assert result.returncode == 2, (url, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "DATABASE_URL" in result.stderr


def test_runs_human_listing(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    update_customer(engine, cid, {"city": "Aarhus"}, user="anna")
    result = manage("runs", "--user", "anna")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and "customer-edit" in lines[1] and "anna" in lines[1]
