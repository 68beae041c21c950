"""The CVR lookup's and e-conomic's previews in a real worker process, against the simulators: Cancel, a stopped read."""

from __future__ import annotations

import time

from sqlalchemy import text

from lib.audit import insert_rows
from lib.job_worker import PREVIEW, start_job
from lib.runs import get_run, request_cancel
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator, EconomicSimulator, make_customer
from tests.jobs_wait import wait_for_jobs


def stored_plans(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM job_plans")).scalar_one()


def test_cancel_stops_a_cvr_preview_between_customers_and_stores_nothing(engine, monkeypatch):
    with engine.begin() as conn:
        insert_rows(conn, "customers", [{"name": f"Kunde {i} ApS", "cvr_number": None} for i in range(20)],
                    run_id=None, user="seed")
    with CvrApiSimulator() as sim:
        sim.latency = 0.3  # 20 lookups: about 6 s unless cancelled
        monkeypatch.setenv("CVR_API_URL", sim.url)
        monkeypatch.setenv("CVR_USER_AGENT", SANDBOX_USER_AGENT)
        run_id = start_job(engine, "cvr-lookup", PREVIEW, {"limit": None}, user="ole@bmc.dk", role="operator")
        deadline = time.monotonic() + 60
        while not (get_run(engine, run_id)["progress_done"] or 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        request_cancel(engine, run_id, user="ole@bmc.dk", role="operator")
        wait_for_jobs(engine)
        run = get_run(engine, run_id)
        assert (run["status"], run["error"]) == ("cancelled", "cancelled by ole@bmc.dk")
        assert 0 < sim.request_count < 20 and stored_plans(engine) == 0


def test_an_economic_read_refused_stops_the_preview_with_where_and_stores_nothing(engine, monkeypatch):
    with EconomicSimulator() as sim:
        sim.customers = [make_customer(1, "Alfa ApS")]
        monkeypatch.setenv("ECONOMIC_API_URL", sim.url)
        monkeypatch.setenv("ECONOMIC_APP_SECRET_TOKEN", "wrong-secret")
        monkeypatch.setenv("ECONOMIC_AGREEMENT_GRANT_TOKEN", sim.agreement_grant_token)
        run_id = start_job(engine, "economic-relink", PREVIEW, {}, user="ole@bmc.dk", role="operator")
        wait_for_jobs(engine)
    run = get_run(engine, run_id)
    assert run["status"] == "stopped" and "check ECONOMIC_APP_SECRET_TOKEN" in run["error"]
    assert "(page 1, 0 read); nothing was written" in run["error"] and stored_plans(engine) == 0
