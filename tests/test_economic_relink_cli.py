"""`python manage.py economic-relink` in a subprocess against the e-conomic simulator: exit codes and JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.cvr import make_cvr
from lib.sandbox import EconomicSimulator, make_customer
from tests.conftest import ROOT

KEYS = {"run_id", "dry_run", "errors", "hub_customers", "economic_customers", "linked", "changed", "unchanged",
        "ambiguous", "unmatched"}


@pytest.fixture
def sim():
    with EconomicSimulator() as s:
        s.customers = [make_customer(1, "Alfa ApS", cvr=f"DK{make_cvr(1)}"), make_customer(2, "Bravo Byg A/S"),
                       make_customer(3, "Charlie Cykler ApS", cvr=make_cvr(3))]
        yield s


@pytest.fixture
def hub(engine):
    with engine.begin() as conn:
        insert_rows(conn, "customers", [
            {"name": "Alfa ApS", "cvr_number": make_cvr(1), "economic_customer_number": None},
            {"name": "Bravo Byg", "cvr_number": None, "economic_customer_number": 99},  # stale → changed
            {"name": "Zulu Zink ApS", "cvr_number": None, "economic_customer_number": None},
        ], run_id=None, user="seed")
    return engine


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=120)


def tokens(sim: EconomicSimulator, secret: str | None = None) -> dict[str, str]:
    return {"ECONOMIC_API_URL": sim.url, "ECONOMIC_APP_SECRET_TOKEN": secret or sim.app_secret_token,
            "ECONOMIC_AGREEMENT_GRANT_TOKEN": sim.agreement_grant_token}


def numbers(engine) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT economic_customer_number FROM customers ORDER BY id")).scalars())


def test_preview_then_apply_exit_0_with_the_interface_keys(hub, sim):
    preview = manage("economic-relink", "--json", env=tokens(sim))
    assert preview.returncode == 0, preview.stderr
    data = json.loads(preview.stdout)
    assert set(data) == KEYS and data["dry_run"] is True and data["run_id"] is None
    assert (data["hub_customers"], data["economic_customers"], data["linked"], data["changed"],
            data["unmatched"]) == (3, 3, 2, 1, 1)
    assert numbers(hub) == [None, 99, None]
    applied = manage("economic-relink", "--apply", "--json", env=tokens(sim))
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert isinstance(result["run_id"], int) and result["dry_run"] is False and result["linked"] == 2
    assert numbers(hub) == [1, 2, None]
    assert all(r.method == "GET" for r in sim.requests)


def test_human_output(hub, sim):
    out = manage("economic-relink", env=tokens(sim))
    assert out.returncode == 0 and "preview" in out.stdout and "linked: 2" in out.stdout


def test_missing_tokens_exit_2_before_any_request(hub, sim):
    out = manage("economic-relink", "--apply", "--json",
                 env={"ECONOMIC_API_URL": sim.url, "ECONOMIC_APP_SECRET_TOKEN": "", "ECONOMIC_AGREEMENT_GRANT_TOKEN": ""})
    assert out.returncode == 2 and "ECONOMIC_APP_SECRET_TOKEN" in json.loads(out.stdout)["error"]  # --json: one object
    assert len(out.stderr.strip().splitlines()) == 1 and "ECONOMIC_APP_SECRET_TOKEN" in out.stderr
    assert sim.request_count == 0 and numbers(hub) == [None, 99, None]


def test_refused_tokens_exit_3_with_json_and_nothing_written(hub, sim):
    out = manage("economic-relink", "--apply", "--json", env=tokens(sim, secret="not-the-secret"))
    assert out.returncode == 3
    data = json.loads(out.stdout)
    assert set(data) == KEYS | {"stopped"} and data["run_id"] is None and "HTTP 401" in data["stopped"]
    assert "not-the-secret" not in out.stdout + out.stderr
    assert numbers(hub) == [None, 99, None]
