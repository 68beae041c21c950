"""AppTest of app_pages/crm_sync.py against the simulator and a real database."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.cvr import make_cvr
from lib.db import get_engine
from lib.roles import Actor
from lib.sandbox import VtigerSimulator, make_account
from tests.apptest import app, no_exception, texts
from tests.jobs_wait import settle

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


def test_write_back_section(engine, simply, monkeypatch):
    seed(engine)
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    at = preview(app("app_pages/crm_sync.py").run())
    assert "Write back to Simply-CRM" in texts(at)
    at.button(key="crm_wb_preview").click().run()
    no_exception(at)
    assert list(at.dataframe[1].value["account"]) == ["11x4"]
    assert simply.accounts[3]["cf_853"] == ""
    at.button(key="crm_wb_apply").click().run()
    no_exception(at)
    assert "Written to Simply-CRM as run" in texts(at)
    assert simply.accounts[3]["cf_853"] == make_cvr(25)
    assert simply.counts["revise"] == 0 and simply.counts["update"] == 1
