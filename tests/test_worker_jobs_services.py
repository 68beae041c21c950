"""The CVR lookup's, e-conomic's and the CRM write-back's previews in a real worker process, against the simulators:
Cancel, a stopped read, an apply that writes what was previewed."""

from __future__ import annotations

import time

from sqlalchemy import text

from lib.audit import insert_rows
from lib.cvr import make_cvr
from lib.job_plans import plan_for_run
from lib.job_worker import APPLY, PREVIEW, start_job
from lib.runs import get_run, request_cancel
from lib.sandbox import (
    SANDBOX_USER_AGENT,
    CvrApiSimulator,
    EconomicSimulator,
    VtigerSimulator,
    make_account,
    make_customer,
)
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


def test_a_write_back_writes_the_cvr_its_stored_preview_showed_and_only_once(engine, monkeypatch):
    """The preview (worker) stores each account's CVR; a Hub CVR changed before the write is reported and not
    written, the other account is; the same preview cannot be written twice."""
    with engine.begin() as conn:
        insert_rows(conn, "customers", [{"name": "Alfa ApS", "cvr_number": make_cvr(31), "vtiger_account_id": "11x1"},
                                        {"name": "Beta ApS", "cvr_number": make_cvr(32), "vtiger_account_id": "11x2"}],
                    run_id=None, user="seed")
    with VtigerSimulator() as sim:
        sim.accounts = [make_account(1, "Alfa ApS", cvr=""), make_account(2, "Beta ApS", cvr="")]
        for name, value in (("VTIGER_URL", sim.url), ("VTIGER_USERNAME", sim.username),
                            ("VTIGER_ACCESS_KEY", sim.access_key), ("CRM_WRITE_BACK", "true")):
            monkeypatch.setenv(name, value)
        who = {"user": "ole@bmc.dk", "role": "operator"}
        preview_id = start_job(engine, "crm-write-back", PREVIEW, {"source": "vtiger"}, **who)
        wait_for_jobs(engine)
        plan_id = plan_for_run(engine, preview_id)["id"]
        with engine.begin() as conn:
            conn.execute(text("UPDATE customers SET cvr_number = :c WHERE name = 'Beta ApS'"), {"c": make_cvr(33)})
        keys = ["vtiger:11x1:write-back", "vtiger:11x2:write-back"]
        apply = {"params": {"source": "vtiger", "plan_id": plan_id}, "approved": keys}
        first = start_job(engine, "crm-write-back", APPLY, apply, **who)
        wait_for_jobs(engine)
        second = start_job(engine, "crm-write-back", APPLY, apply, **who)
        wait_for_jobs(engine)
        cvr_field = sim.cvr_field
        written = {a["id"]: a[cvr_field] for a in sim.accounts}
    run = get_run(engine, first)
    assert (run["status"], run["stats"]["written"]) == ("succeeded", 1)
    assert written == {"11x1": make_cvr(31), "11x2": ""}
    assert any(f"the preview showed {make_cvr(32)}" in e["message"] for e in run["stats"]["errors"])
    again = get_run(engine, second)
    assert again["status"] == "failed" and f"was applied as run {first}" in again["error"]
