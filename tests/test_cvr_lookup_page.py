"""AppTest of the CVR lookup page (preview, approve, apply) and of the customer page's one-customer widget."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from lib.audit import insert_rows
from lib.customers import get_customer
from lib.cvr import make_cvr
from lib.job_plans import PlanUnusable
from lib.job_worker import latest_run
from lib.jobs import runner
from lib.roles import Actor
from lib.runs import list_runs
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator
from tests.apptest import app, no_exception, texts
from tests.jobs_wait import settle, wait_for_jobs


def stored_plans(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT id, kind, applied_run_id FROM job_plans")).mappings()]


@pytest.fixture
def sim(monkeypatch):
    with CvrApiSimulator() as s:
        s.add_company(make_cvr(401), "Sikker Software ApS", zipcode="8000", city="Aarhus C")
        s.add_company(make_cvr(402), "Tvivlsom Tømrer ApS", zipcode="8000", city="Aarhus C")
        monkeypatch.setenv("CVR_API_URL", s.url)
        monkeypatch.setenv("CVR_USER_AGENT", SANDBOX_USER_AGENT)
        yield s


def add_customers(engine, rows: list[dict]) -> list[int]:
    full = [{"cvr_number": None, "zip": None, **r} for r in rows]
    with engine.begin() as conn:
        return insert_rows(conn, "customers", full, run_id=None, user="seed")


def metric(at: AppTest, label: str):
    return next(m.value for m in at.metric if m.label == label)


def test_preview_approve_apply(engine, sim):
    sure, doubt, unknown = add_customers(engine, [
        {"name": "Sikker Software ApS", "zip": "8000"},
        {"name": "Tvivlsom Tømrer", "zip": "9000"},  # zip differs: needs a person
        {"name": "Ingen Steder ApS"},
    ])
    at = no_exception(app("app_pages/cvr_lookup.py").run())
    assert metric(at, "Customers without CVR") == "3"
    assert metric(at, "Lookups left today (as far as known)") == "50"

    at.button(key="cvr_preview").click().run()
    no_exception(settle(at, engine))  # the lookups run in a worker process
    assert sim.request_count == 3
    assert metric(at, "Found") == "1" and metric(at, "Ambiguous") == "1"
    frame = at.dataframe[0].value
    assert set(frame["customer"]) == {f"Sikker Software ApS (#{sure})", f"Tvivlsom Tømrer (#{doubt})"}
    assert set(frame["CVR"]) == {make_cvr(401), make_cvr(402)}
    assert "zip 9000 differs from 8000" in " ".join(frame["evidence"])
    at.multiselect(key="cvr_show").select("not_found").run()
    assert len(at.dataframe[0].value) == 3

    no_exception(at.checkbox(key=f"cvr_ok_{doubt}:{make_cvr(402)}").check().run())
    assert "Apply writes 2 CVR number(s)" in texts(at)
    at.button(key="cvr_apply").click().run()
    no_exception(settle(at, engine))  # the apply runs in a worker process
    assert get_customer(engine, sure)["cvr_number"] == make_cvr(401)
    assert get_customer(engine, doubt)["cvr_number"] == make_cvr(402)
    assert get_customer(engine, unknown)["cvr_number"] is None
    assert metric(at, "Updated") == "2" and metric(at, "Customers without CVR") == "1"
    assert metric(at, "Lookups left today (as far as known)") == "47"
    assert sim.request_count == 3  # apply asked nothing


def test_unticked_ambiguous_is_not_applied(engine, sim):
    sure, doubt = add_customers(engine, [{"name": "Sikker Software ApS"}, {"name": "Tvivlsom Tømrer", "zip": "9000"}])
    at = no_exception(app("app_pages/cvr_lookup.py").run())
    at.button(key="cvr_preview").click().run()
    settle(at, engine)
    at.button(key="cvr_apply").click().run()
    no_exception(settle(at, engine))
    assert get_customer(engine, sure)["cvr_number"] == make_cvr(401)
    assert get_customer(engine, doubt)["cvr_number"] is None


def test_quota_stop_is_shown(engine, sim):
    add_customers(engine, [{"name": "Sikker Software ApS"}, {"name": "Tvivlsom Tømrer"}])
    sim.quota = 1
    at = no_exception(app("app_pages/cvr_lookup.py").run())
    at.button(key="cvr_preview").click().run()
    no_exception(settle(at, engine))
    assert "QUOTA_EXCEEDED" in texts(at) and metric(at, "Not asked") == "1"
    at = no_exception(app("app_pages/cvr_lookup.py").run())
    assert metric(at, "Lookups left today (as far as known)") == "0"


def test_stored_preview_is_shown_again_approved_later_and_applied_once(engine, sim):
    """A second session (another tab, or the same person later) sees the stored preview and applies it."""
    sure, doubt = add_customers(engine, [{"name": "Sikker Software ApS"}, {"name": "Tvivlsom Tømrer", "zip": "9000"}])
    first = app("app_pages/cvr_lookup.py").run()
    first.button(key="cvr_preview").click().run()
    wait_for_jobs(engine)
    later = no_exception(app("app_pages/cvr_lookup.py").run())
    assert "Apply writes 1 CVR number(s)" in texts(later) and sim.request_count == 2
    later.checkbox(key=f"cvr_ok_{doubt}:{make_cvr(402)}").check().run()
    later.button(key="cvr_apply").click().run()
    no_exception(settle(later, engine))
    assert metric(later, "Updated") == "2" and sim.request_count == 2  # the stored plan was written, nothing asked
    assert get_customer(engine, doubt)["cvr_number"] == make_cvr(402)
    (stored,) = stored_plans(engine)
    assert stored["applied_run_id"] == latest_run(engine, "cvr-lookup", dry_run=False)["run_id"]
    assert not [b for b in no_exception(first.run()).button if b.key == "cvr_apply"]  # applied: not offered again


def test_preview_outdated_by_a_customer_change_is_refused(engine, sim):
    sure, doubt = add_customers(engine, [{"name": "Sikker Software ApS"}, {"name": "Tvivlsom Tømrer", "zip": "9000"}])
    at = app("app_pages/cvr_lookup.py").run()
    at.button(key="cvr_preview").click().run()
    settle(at, engine)
    plan_id = stored_plans(engine)[0]["id"]
    add_customers(engine, [{"name": "Ny Kunde ApS"}])
    no_exception(at.run())
    assert "can no longer be applied: the data this preview read has changed since" in texts(at)
    assert not [b for b in at.button if b.key == "cvr_apply"]
    with pytest.raises(PlanUnusable, match="changed since; preview again"):  # the apply checks it again itself
        runner.apply("cvr-lookup", {"plan_id": plan_id}, (), Actor("ole@bmc.dk", "operator"), engine=engine)
    assert get_customer(engine, sure)["cvr_number"] is None
    assert list_runs(engine)[0]["status"] == "failed"


def test_missing_user_agent_is_shown_and_preview_disabled(engine, monkeypatch, sim):
    monkeypatch.delenv("CVR_USER_AGENT")
    at = no_exception(app("app_pages/cvr_lookup.py").run())
    assert "CVR_USER_AGENT is not set" in texts(at)
    assert at.button(key="cvr_preview").disabled


WIDGET_SCRIPT = """
from lib.customers import get_customer
from lib.db import open_database
from lib.roles import Actor
from ui.cvr_widgets import customer_cvr_lookup

engine = open_database()
customer_cvr_lookup(engine, get_customer(engine, {cid}), Actor("ole@bmc.dk", "operator"))
"""


def test_customer_widget_looks_up_and_saves(engine, sim):
    (cid,) = add_customers(engine, [{"name": "Tvivlsom Tømrer", "zip": "9000"}])
    at = no_exception(AppTest.from_string(WIDGET_SCRIPT.format(cid=cid), default_timeout=60).run())
    no_exception(at.button(key=f"cvr_one_look_{cid}").click().run())
    assert "Needs a person" in texts(at) and get_customer(engine, cid)["cvr_number"] is None
    assert not [b for b in at.button if b.key == f"cvr_one_save_{cid}"]  # not before the person confirms
    no_exception(at.checkbox(key=f"cvr_one_ok_{cid}").check().run())
    no_exception(at.button(key=f"cvr_one_save_{cid}").click().run())
    assert get_customer(engine, cid)["cvr_number"] == make_cvr(402)
    assert f"CVR {make_cvr(402)} saved" in texts(at)
    assert sim.request_count == 1
