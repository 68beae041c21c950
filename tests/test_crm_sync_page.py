"""AppTest of app_pages/crm_sync.py against the simulator and a real database."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.cvr import make_cvr
from lib.db import get_engine
from lib.job_worker import APPLY, latest_run, start_job
from lib.roles import Actor
from lib.sandbox import VtigerSimulator, make_account
from tests.apptest import app, no_exception, texts
from tests.jobs_wait import settle, wait_for_jobs

CVR_A, CVR_B, CVR_C, CVR_D = (make_cvr(n) for n in (21, 22, 23, 24))


@pytest.fixture
def simply(monkeypatch):
    with VtigerSimulator(mode="simply") as sim:
        sim.accounts = [
            make_account(1, "Alfa ApS", cvr=CVR_A),  # fill by name
            make_account(2, "Beta ApS", cvr=CVR_B),  # conflict through the stored id
            make_account(3, "Nordlys Consult ApS", cvr=CVR_C),  # ambiguous: two look-alikes
            make_account(4, "Gamma ApS", cvr=""),  # write-back candidate
        ]
        monkeypatch.setenv("SIMPLYCRM_URL", sim.url)
        monkeypatch.setenv("SIMPLYCRM_USERNAME", sim.username)
        monkeypatch.setenv("SIMPLYCRM_ACCESS_KEY", sim.access_key)
        yield sim


def seed(engine) -> None:
    rows = [("Alfa ApS", None, None, None), ("Beta ApS", CVR_D, "11x2", None),
            ("Nordlys Consult ApS", None, None, "8000"), ("Nordlys Consult A/S", None, None, "8000"),
            ("Gamma ApS", make_cvr(25), "11x4", None)]
    with engine.begin() as conn:
        insert_rows(conn, "customers", [{"name": n, "cvr_number": c, "simplycrm_account_id": a, "zip": z}
                                        for n, c, a, z in rows], run_id=None, user="seed")


def cvr_of(engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT cvr_number FROM customers WHERE name = :n"), {"n": name}).scalar()


def preview(at):
    at.selectbox(key="crm_source").set_value("simplycrm").run()
    at.button(key="crm_preview").click().run()
    return no_exception(settle(at, get_engine()))  # the preview reads the CRM in a worker process


def test_preview_resolve_conflict_approve_and_apply(engine, simply):
    seed(engine)
    at = preview(app("app_pages/crm_sync.py").run())
    shown = texts(at)
    assert "Preview: 4 Simply-CRM account(s)" in shown and "Conflict=1" in shown and "Ambiguous=1" in shown
    assert "Write back" not in shown  # the write-back section needs CRM_WRITE_BACK
    table = at.dataframe[0].value
    assert set(table["outcome"]) == {"fill CVR", "conflict", "ambiguous", "unchanged"}
    assert CVR_D in set(table["Hub CVR"]) and CVR_B in set(table["CRM CVR"])
    at.radio(key="crm_res_simplycrm:11x2").set_value("take CRM")
    at.checkbox(key="crm_ok_simplycrm:11x3").check()
    at.run()
    assert "including 2 row(s) you chose" in texts(at)
    at.button(key="crm_apply").click().run()
    no_exception(settle(at, engine))  # the apply runs in a worker process
    assert "Applied as run" in texts(at)
    assert cvr_of(engine, "Alfa ApS") == CVR_A and cvr_of(engine, "Beta ApS") == CVR_B
    assert CVR_C in (cvr_of(engine, "Nordlys Consult ApS"), cvr_of(engine, "Nordlys Consult A/S"))


def test_keep_hub_is_the_default(engine, simply):
    seed(engine)
    at = preview(app("app_pages/crm_sync.py").run())
    assert at.radio(key="crm_res_simplycrm:11x2").value == "keep Hub"
    at.button(key="crm_apply").click().run()
    no_exception(settle(at, engine))
    assert cvr_of(engine, "Beta ApS") == CVR_D and cvr_of(engine, "Alfa ApS") == CVR_A


def test_filter_and_viewer_is_refused(engine, simply):
    seed(engine)
    at = preview(app("app_pages/crm_sync.py").run())
    at.multiselect(key="crm_filter").set_value(["conflict"]).run()
    assert list(at.dataframe[0].value["outcome"]) == ["conflict"]
    requests_before = simply.request_count
    viewer = app("app_pages/crm_sync.py")
    viewer.session_state["_hub_actor"] = Actor("vera@bmc.dk", "viewer")
    viewer.run()
    assert "needs the operator role" in texts(viewer)
    assert not [b for b in viewer.button if b.key == "crm_preview"] and simply.request_count == requests_before


def test_missing_settings_shown_as_error(engine, monkeypatch):
    at = app("app_pages/crm_sync.py").run()
    at.button(key="crm_preview").click().run()
    no_exception(at)
    assert "VTIGER_URL" in " ".join(e.value for e in at.error)


def ran_in_a_worker(run: dict) -> bool:
    return bool(run["worker"]) and run["worker"].rpartition(":")[2] != str(os.getpid())


def test_write_back_section(engine, simply, monkeypatch):
    """The write-back is previewed and written by worker processes (the write reads the CRM again and writes the
    previewed account); the page shows the finished run's statistics, also to a new session coming back."""
    seed(engine)
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    at = preview(app("app_pages/crm_sync.py").run())
    assert "Write back to Simply-CRM" in texts(at)
    reads = simply.counts["query"]
    at.button(key="crm_wb_preview").click().run()
    no_exception(settle(at, engine))
    assert list(at.dataframe[1].value["account"]) == ["11x4"]
    assert simply.counts["query"] == reads  # the sync preview's accounts: no second read of the CRM
    assert simply.accounts[3]["cf_853"] == ""
    at.button(key="crm_wb_apply").click().run()
    no_exception(settle(at, engine))  # written in a worker process
    assert "Written to Simply-CRM as run" in texts(at)
    assert simply.accounts[3]["cf_853"] == make_cvr(25)
    assert simply.counts["revise"] == 0 and simply.counts["update"] == 1
    run = latest_run(engine, "crm-write-back", dry_run=False)
    assert ran_in_a_worker(run) and run["status"] == "succeeded"
    assert (run["stats"]["proposed"], run["stats"]["written"], run["stats"]["skipped"]) == (1, 1, 0)

    later = app("app_pages/crm_sync.py").run()  # coming back: another session, the newest write-back run
    later.selectbox(key="crm_source").set_value("simplycrm").run()
    no_exception(later)
    assert f"Written to Simply-CRM as run {run['run_id']}: 1 account(s), 0 skipped." in texts(later)
    assert "Written=1" in texts(later)


def test_write_back_is_watched_and_cancelled_from_the_page(engine, simply, monkeypatch):
    """While the worker waits for the CRM the page shows its progress and Cancel; Cancel ends the run as
    cancelled with nothing written, and the page says so."""
    seed(engine)
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "120")  # the simulator is held while the page cancels
    at = preview(app("app_pages/crm_sync.py").run())
    at.button(key="crm_wb_preview").click().run()
    settle(at, engine)
    with simply.paused():
        at.button(key="crm_wb_apply").click().run()
        no_exception(at)
        run = latest_run(engine, "crm-write-back", dry_run=False)
        assert run["status"] == "running" and "Writing to Simply-CRM" in texts(at)
        at.button(key=f"job_cancel_{run['run_id']}").click().run()
        assert latest_run(engine, "crm-write-back", dry_run=False)["cancel_requested_by"]
    no_exception(settle(at, engine))
    run = latest_run(engine, "crm-write-back", dry_run=False)
    assert (run["status"], run["stats"]["written"]) == ("cancelled", 0) and ran_in_a_worker(run)
    assert simply.accounts[3]["cf_853"] == "" and simply.counts["update"] == 0
    assert f"Run {run['run_id']} was cancelled by" in texts(at)
    assert "undo cannot revert them" in run["error"]  # CRM writes are not the Hub's to undo


def test_write_back_refused_when_switched_off_in_the_worker(engine, simply, monkeypatch):
    """A write-back started while CRM_WRITE_BACK is off (e.g. switched off after the page was drawn) is refused
    by the job in its worker: the run fails with the setting's message, nothing is read or written."""
    seed(engine)
    monkeypatch.delenv("CRM_WRITE_BACK", raising=False)
    start_job(engine, "crm-write-back", APPLY, {"params": {"source": "simplycrm"}, "approved": ["simplycrm:11x4:write-back"]},
              user="ole@bmc.dk", role="operator")
    wait_for_jobs(engine)
    run = latest_run(engine, "crm-write-back", dry_run=False)
    assert run["status"] == "failed" and "CRM_WRITE_BACK=true" in run["error"]
    assert simply.request_count == 0


def stored_write_back_previews(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM job_plans WHERE kind = 'crm-write-back'")).scalar_one()


def test_write_back_preview_runs_in_a_worker_and_is_there_when_you_come_back(engine, simply, monkeypatch):
    """Without a sync preview the write-back preview reads the CRM in a worker process and stores its plan; a new
    session (a reload, another tab) shows that stored preview and writes exactly it."""
    seed(engine)
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    at = app("app_pages/crm_sync.py").run()
    at.selectbox(key="crm_source").set_value("simplycrm").run()
    at.button(key="crm_wb_preview").click().run()
    no_exception(settle(at, engine))
    run = latest_run(engine, "crm-write-back", dry_run=True)
    assert ran_in_a_worker(run) and run["status"] == "succeeded" and run["stats"]["proposed"] == 1
    assert simply.counts["query"] > 0 and stored_write_back_previews(engine) == 1

    later = app("app_pages/crm_sync.py").run()  # coming back: the CRM of the last sync preview is unknown here
    later.selectbox(key="crm_source").set_value("simplycrm").run()
    no_exception(later)
    assert list(later.dataframe[0].value["account"]) == ["11x4"]
    assert f"Write-back preview {run['run_id']}" in texts(later)
    later.button(key="crm_wb_apply").click().run()
    no_exception(settle(later, engine))
    assert simply.accounts[3]["cf_853"] == make_cvr(25)
    done = latest_run(engine, "crm-write-back", dry_run=False)
    assert done["parameters"]["params"]["plan_id"] and done["stats"]["written"] == 1


def test_cancel_during_the_write_back_preview(engine, simply, monkeypatch):
    """While the worker reads the CRM (held) the page shows progress and Cancel; Cancel ends the preview as
    cancelled, nothing is stored, and the page says so."""
    seed(engine)
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "120")  # the simulator is held while the page cancels
    at = app("app_pages/crm_sync.py").run()
    at.selectbox(key="crm_source").set_value("simplycrm").run()
    with simply.paused():
        at.button(key="crm_wb_preview").click().run()
        no_exception(at)
        run = latest_run(engine, "crm-write-back", dry_run=True)
        assert run["status"] == "running" and "Reading Simply-CRM for the write-back" in texts(at)
        at.button(key=f"job_cancel_{run['run_id']}").click().run()
        assert latest_run(engine, "crm-write-back", dry_run=True)["cancel_requested_by"]
    no_exception(settle(at, engine))
    run = latest_run(engine, "crm-write-back", dry_run=True)
    assert run["status"] == "cancelled" and ran_in_a_worker(run)
    assert stored_write_back_previews(engine) == 0 and not [b for b in at.button if b.key == "crm_wb_apply"]
    assert f"Run {run['run_id']} was cancelled by" in texts(at)
