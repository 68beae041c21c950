"""`python manage.py cvr-lookup` as a user runs it: a subprocess, the test database, an in-process simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lib.audit import insert_rows
from lib.customers import get_customer
from lib.cvr import make_cvr
from lib.runs import get_run
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator
from tests.conftest import ROOT

KEYS = {"run_id", "dry_run", "errors", "candidates", "found", "updated", "not_found", "ambiguous", "quota_exhausted"}


@pytest.fixture
def sim():
    with CvrApiSimulator() as s:
        for n, name in enumerate(("Alfa Data ApS", "Bravo Byg ApS", "Charlie Cafe ApS")):
            s.add_company(make_cvr(300 + n), name, zipcode="8000", city="Aarhus C")
        yield s


@pytest.fixture
def customers(engine):
    rows = [{"name": n, "cvr_number": None, "zip": "8000"} for n in ("Alfa Data ApS", "Bravo Byg ApS",
                                                                     "Charlie Cafe ApS", "Delta Ukendt ApS")]
    with engine.begin() as conn:
        return insert_rows(conn, "customers", rows, run_id=None, user="seed")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "manage.py", "cvr-lookup", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def service_env(sim: CvrApiSimulator, db_url: str) -> dict[str, str]:
    return {"DATABASE_URL": db_url, "CVR_API_URL": sim.url, "CVR_USER_AGENT": SANDBOX_USER_AGENT}


def test_preview_then_apply(db_url, customers, sim):
    preview = cli("--json", env=service_env(sim, db_url))
    assert preview.returncode == 0, preview.stderr
    payload = json.loads(preview.stdout)
    assert KEYS <= set(payload)
    assert (payload["run_id"], payload["dry_run"], payload["candidates"], payload["found"], payload["not_found"],
            payload["updated"], payload["quota_exhausted"]) == (None, True, 4, 3, 1, 3, False)

    applied = cli("--apply", "--json", env=service_env(sim, db_url))
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert result["dry_run"] is False and result["updated"] == 3 and isinstance(result["run_id"], int)
    assert sim.request_count == 4  # the apply answered everything from the cache
    from lib.db import get_engine

    engine = get_engine(db_url)
    assert [get_customer(engine, i)["cvr_number"] for i in customers] == [make_cvr(300), make_cvr(301),
                                                                          make_cvr(302), None]


def test_limit_and_human_output(db_url, customers, sim):
    done = cli("--limit", "2", env=service_env(sim, db_url))
    assert done.returncode == 0, done.stderr
    assert "preview (nothing written" in done.stdout and "candidates: 2" in done.stdout
    assert sim.request_count == 2
    bad = cli("--limit", "0", "--json", env=service_env(sim, db_url))
    assert bad.returncode == 2 and "--limit" in json.loads(bad.stdout)["error"] and "--limit" in bad.stderr


def test_missing_user_agent_is_exit_2_before_any_request(db_url, customers, sim):
    env = service_env(sim, db_url) | {"CVR_USER_AGENT": ""}
    done = cli("--apply", "--json", env=env)
    assert done.returncode == 2 and "CVR_USER_AGENT" in json.loads(done.stdout)["error"]  # --json: one object
    assert len(done.stderr.strip().splitlines()) == 1 and "CVR_USER_AGENT" in done.stderr
    assert sim.request_count == 0
    generic = cli("--json", env=env | {"CVR_USER_AGENT": "python-requests/2.32.3"})
    assert generic.returncode == 2 and sim.request_count == 0


def test_quota_exhausted_is_exit_3_with_the_json_and_the_decisions_kept(db_url, customers, sim):
    sim.quota = 2
    done = cli("--apply", "--json", env=service_env(sim, db_url))
    assert done.returncode == 3, done.stderr
    payload = json.loads(done.stdout)
    assert KEYS <= set(payload)
    assert payload["quota_exhausted"] is True and payload["updated"] == 2 and payload["not_asked"] == 2
    assert "QUOTA_EXCEEDED" in payload["stopped"] and "stopped early" in done.stderr
    from lib.db import get_engine

    run = get_run(get_engine(db_url), payload["run_id"])
    assert run["status"] == "stopped"

    sim.used.clear()
    again = cli("--apply", "--json", env=service_env(sim, db_url))
    assert again.returncode == 0, again.stderr
    rest = json.loads(again.stdout)
    assert (rest["candidates"], rest["updated"], rest["not_found"], rest["quota_exhausted"]) == (2, 1, 1, False)
    assert sim.request_count == 3 + 2  # two answers and a refusal, then the two never asked


def test_ban_is_exit_3(db_url, customers, sim):
    sim.banned = True
    done = cli("--json", env=service_env(sim, db_url))
    assert done.returncode == 3
    assert json.loads(done.stdout)["quota_exhausted"] is True
