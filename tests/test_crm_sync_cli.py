"""`python manage.py crm-sync` in a subprocess against the simulators: exit codes and JSON keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.cvr import make_cvr
from lib.sandbox import VtigerSimulator, make_account
from tests.conftest import ROOT

KEYS = {"run_id", "dry_run", "errors", "source", "accounts", "updated", "unchanged", "conflicts", "unmatched"}


def manage(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=120)


def crm_env(sim: VtigerSimulator, prefix: str, **extra: str) -> dict:
    return {f"{prefix}_URL": sim.url, f"{prefix}_USERNAME": sim.username, f"{prefix}_ACCESS_KEY": sim.access_key,
            **extra}


@pytest.fixture(params=[("vtiger", "vtiger", "VTIGER"), ("simply", "simplycrm", "SIMPLYCRM")], ids=["vtiger", "simply"])
def target(request):
    mode, source, prefix = request.param
    with VtigerSimulator(mode=mode) as sim:
        sim.accounts = [make_account(1, "Alfa ApS", cvr=make_cvr(1)), make_account(2, "Beta ApS", cvr="")]
        yield sim, source, prefix


def seed(engine) -> None:
    with engine.begin() as conn:
        insert_rows(conn, "customers", [{"name": "Alfa ApS", "cvr_number": None}, {"name": "Beta ApS", "cvr_number": make_cvr(2)}],
                    run_id=None, user="seed")


def test_preview_then_apply(engine, target):
    sim, source, prefix = target
    seed(engine)
    dry = manage("crm-sync", "--source", source, "--json", env=crm_env(sim, prefix))
    assert dry.returncode == 0, dry.stderr
    payload = json.loads(dry.stdout)
    assert KEYS <= set(payload) and payload["source"] == source
    assert (payload["run_id"], payload["dry_run"], payload["accounts"], payload["updated"], payload["linked"]) == (
        None, True, 2, 1, 2)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers WHERE cvr_number IS NULL")).scalar() == 1
    applied = manage("crm-sync", "--source", source, "--apply", "--json", env=crm_env(sim, prefix))
    assert applied.returncode == 0, applied.stderr
    done = json.loads(applied.stdout)
    assert isinstance(done["run_id"], int) and done["dry_run"] is False and done["updated"] == 1
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT cvr_number, {source}_account_id FROM customers WHERE name = 'Alfa ApS'")).one()
    assert tuple(row) == (make_cvr(1), "11x1")
    human = manage("crm-sync", "--source", source, env=crm_env(sim, prefix))
    assert human.returncode == 0 and "preview (nothing written" in human.stdout


def test_missing_settings_exit_2_before_any_request(engine, target):
    sim, source, prefix = target
    result = manage("crm-sync", "--source", source, "--json", env={f"{prefix}_URL": sim.url})
    assert result.returncode == 2
    assert f"{prefix}_USERNAME" in result.stderr and f"{prefix}_ACCESS_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sim.request_count == 0


def test_refused_login_exit_3_with_json(engine, target):
    sim, source, prefix = target
    env = crm_env(sim, prefix)
    env[f"{prefix}_ACCESS_KEY"] = "wrong-key-123"
    result = manage("crm-sync", "--source", source, "--apply", "--json", env=env)
    assert result.returncode == 3
    payload = json.loads(result.stdout)
    assert KEYS <= set(payload) and "INVALID_USER_CREDENTIALS" in payload["stopped"]
    assert payload["accounts"] == 0 and payload["run_id"] is None
    assert "wrong-key-123" not in result.stdout + result.stderr
    assert sim.counts["query"] == 0


def test_write_back_flag(engine, target):
    sim, source, prefix = target
    seed(engine)
    refused = manage("crm-sync", "--source", source, "--write-back", "--json", env=crm_env(sim, prefix))
    assert refused.returncode == 2 and "CRM_WRITE_BACK" in refused.stderr and sim.request_count == 0
    env = crm_env(sim, prefix, CRM_WRITE_BACK="true")
    preview = manage("crm-sync", "--source", source, "--write-back", "--json", env=env)
    assert preview.returncode == 0, preview.stderr
    wb = json.loads(preview.stdout)["write_back"]
    assert (wb["proposed"], wb["written"], wb["dry_run"]) == (1, 0, True)
    assert sim.accounts[1]["cf_853"] == ""
    applied = manage("crm-sync", "--source", source, "--apply", "--write-back", "--json", env=env)
    assert applied.returncode == 0, applied.stderr
    wb = json.loads(applied.stdout)["write_back"]
    assert wb["written"] == 1 and isinstance(wb["run_id"], int)
    assert sim.accounts[1]["cf_853"] == make_cvr(2)
