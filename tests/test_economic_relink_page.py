"""AppTest of app_pages/economic.py against the e-conomic simulator: preview, filters, approve, apply, import."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import text

from lib.audit import insert_rows, update_row, utcnow
from lib.cvr import make_cvr
from lib.job_plans import PlanUnusable
from lib.job_worker import APPLY, latest_run, start_job
from lib.jobs import runner
from lib.roles import Actor
from lib.runs import get_run, list_runs
from lib.sandbox import EconomicSimulator, make_customer
from tests.apptest import app, no_exception, signed_in, texts
from tests.jobs_wait import settle, wait_for_jobs


def plan_ids(engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM job_plans WHERE kind = 'economic-relink'")).scalars())

PAGE = "app_pages/economic.py"


@contextmanager
def customers_held(engine) -> Iterator[None]:
    """Someone else's write lock (SQLite: the database; PostgreSQL: the customers table) while the block runs:
    readers go on, a worker's writes wait."""
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(engine.url.database, timeout=30, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("COMMIT")
            conn.close()
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(text("LOCK TABLE customers IN EXCLUSIVE MODE"))
        yield


@pytest.fixture
def sim(monkeypatch):
    with EconomicSimulator() as s:
        s.customers = [
            make_customer(1, "Alfa ApS", cvr=f"DK {make_cvr(1)}", barred=True),
            make_customer(2, "Hotel Havblik ApS", zip="9990"),
            make_customer(3, "Hotel Havblik ApS", zip="9990"),
            make_customer(4, "Delta Data ApS", cvr=make_cvr(4)),
            make_customer(5, "Juliet Jern ApS"),
            make_customer(6, "Mike Maling ApS", cvr=make_cvr(6), city="Odense"),
        ]
        monkeypatch.setenv("ECONOMIC_API_URL", s.url)
        monkeypatch.setenv("ECONOMIC_APP_SECRET_TOKEN", s.app_secret_token)
        monkeypatch.setenv("ECONOMIC_AGREEMENT_GRANT_TOKEN", s.agreement_grant_token)
        yield s


@pytest.fixture
def hub(engine):
    with engine.begin() as conn:
        ids = insert_rows(conn, "customers", [
            {"name": "Alfa ApS", "cvr_number": make_cvr(1), "economic_customer_number": None, "zip": None},
            {"name": "Hotel Havblik", "cvr_number": None, "economic_customer_number": None, "zip": "9990"},
            {"name": "Delta Data", "cvr_number": make_cvr(4), "economic_customer_number": 5, "zip": None},
        ], run_id=None, user="seed")
    return dict(zip(("alfa", "hotel", "delta"), ids, strict=True))


def numbers(engine) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, economic_customer_number FROM customers")).all())


def previewed(engine):
    at = no_exception(app(PAGE).run())
    assert "Press Preview" in texts(at)
    at.button(key="economic_preview").click().run()
    return no_exception(settle(at, engine))  # e-conomic is read in a worker process


def test_preview_shows_counts_evidence_and_problems(engine, hub, sim):
    at = previewed(engine)
    shown = texts(at)
    assert "Linked=1" in shown and "Ambiguous=2" in shown and "Hub customers=3" in shown
    assert "1 request(s)" in shown
    frame = at.dataframe[0].value
    assert set(frame["row"]) == {f"c{hub['alfa']}", f"c{hub['hotel']}", f"c{hub['delta']}"}
    delta = frame[frame["row"] == f"c{hub['delta']}"].iloc[0]  # both sides shown
    assert (delta["linked no."], delta["linked (e-conomic)"], delta["proposed no."], delta["e-conomic name"]) == (
        5, "Juliet Jern ApS", 4, "Delta Data ApS")
    assert delta["action"] == "needs approval"
    at.multiselect(key="economic_outcomes").set_value(["ambiguous"]).run()
    assert list(at.dataframe[0].value["row"]) == [f"c{hub['hotel']}"]
    at.text_input(key="economic_search").set_value("nothing like this").run()
    assert "0 of 3 Hub customers shown" in texts(at)
    problems = at.dataframe[0].value  # with no proposal shown, the first table is the Problems tab's
    assert list(problems["kind"]) == ["barred"] and list(problems["customer_id"]) == [hub["alfa"]]
    assert numbers(engine) == {hub["alfa"]: None, hub["hotel"]: None, hub["delta"]: 5}


def test_approve_per_row_then_apply(engine, hub, sim):
    at = previewed(engine)
    assert at.button(key="economic_apply").label == "Apply 1 link(s)"
    at.multiselect(key="economic_approved").set_value([f"c{hub['delta']}"]).run()
    assert "Linked=2" in texts(at) and at.button(key="economic_apply").label == "Apply 2 link(s)"
    at.button(key="economic_apply").click().run()
    no_exception(settle(at, engine))  # the apply runs in a worker process
    assert "Applied as run" in texts(at)
    assert numbers(engine) == {hub["alfa"]: 1, hub["hotel"]: None, hub["delta"]: 4}
    assert list_runs(engine)[0]["kind"] == "economic-relink"


def test_bulk_approve_and_clear(engine, hub, sim):
    at = previewed(engine)
    no_exception(at.button(key="economic_approve_shown").click().run())
    assert set(at.multiselect(key="economic_approved").value) == {f"c{hub['delta']}", f"c{hub['hotel']}"}
    no_exception(at.button(key="economic_clear").click().run())
    assert at.multiselect(key="economic_approved").value == []


def test_import_unlinked_customers_is_a_separate_confirmed_run(engine, hub, sim):
    """Creating Hub customers runs in a worker process from the stored preview (nothing read from e-conomic);
    the page, and a new session coming back, show the finished run's statistics."""
    at = previewed(engine)
    assert at.button(key="economic_import").disabled
    at.checkbox(key="economic_import_ok").check().run()
    requests_before = sim.request_count
    no_exception(at.button(key="economic_import").click().run())
    no_exception(settle(at, engine))  # created in a worker process
    assert "Created 1 Hub customer(s)" in texts(at)
    assert "can no longer be applied: the data this preview read has changed since" in texts(at)
    assert 6 in numbers(engine).values() and sim.request_count == requests_before
    run = list_runs(engine)[0]
    assert (run["kind"], run["status"], run["stats"]["created"]) == ("economic-import-customers", "succeeded", 1)
    worker = get_run(engine, run["run_id"])["worker"]
    assert worker and worker.rpartition(":")[2] != str(os.getpid())  # another process wrote them
    later = no_exception(app(PAGE).run())  # coming back: the newest import since the preview, with its counts
    assert f"Created 1 Hub customer(s) as run {run['run_id']}; 0 skipped." in texts(later)
    assert "Created=1" in texts(later)


def test_import_running_is_watched_and_an_expired_preview_is_refused(engine, hub, sim):
    """While the import runs the page shows its progress and Cancel; an import of a preview that expired is
    refused inside its run (failed, with the reason), nothing created."""
    previewed(engine)
    (plan_id,) = plan_ids(engine)
    run_id = start_job(engine, "economic-import-customers", APPLY, {"params": {"plan_id": plan_id}},
                       user="ole@bmc.dk", role="operator")
    with customers_held(engine):  # the worker starts (its Python takes far longer) and waits for the database
        watching = no_exception(app(PAGE).run())
        assert "Creating Hub customers from e-conomic" in texts(watching)
        assert [b for b in watching.button if b.key == f"job_cancel_{run_id}"]
    wait_for_jobs(engine)
    assert get_run(engine, run_id)["status"] == "succeeded"
    with engine.begin() as conn:  # as if an hour had passed
        conn.execute(text("UPDATE job_plans SET expires_at = :t WHERE id = :id"),
                     {"t": utcnow() - timedelta(minutes=1), "id": plan_id})
    expired = start_job(engine, "economic-import-customers", APPLY, {"params": {"plan_id": plan_id}},
                        user="ole@bmc.dk", role="operator")
    wait_for_jobs(engine)
    run = get_run(engine, expired)
    assert run["status"] == "failed" and "preview again" in run["error"]


def test_stored_preview_is_applied_from_another_session_once(engine, hub, sim):
    """Coming back (a new session) shows the stored preview; its apply reads nothing from e-conomic."""
    previewed(engine)
    later = no_exception(app(PAGE).run())
    assert "Linked=1" in texts(later) and sim.request_count == 1
    later.multiselect(key="economic_approved").set_value([f"c{hub['delta']}"]).run()
    later.button(key="economic_apply").click().run()
    no_exception(settle(later, engine))
    assert "Applied as run" in texts(later) and sim.request_count == 1
    assert numbers(engine) == {hub["alfa"]: 1, hub["hotel"]: None, hub["delta"]: 4}
    (plan_id,) = plan_ids(engine)
    with pytest.raises(PlanUnusable, match="was applied as run"):
        runner.apply("economic-relink", {"plan_id": plan_id}, (), Actor("ole@bmc.dk", "operator"), engine=engine)


def test_outdated_preview_is_refused_by_the_apply(engine, hub, sim):
    """A Hub customer edited after the preview: the worker's apply refuses the plan and writes nothing."""
    at = previewed(engine)
    (plan_id,) = plan_ids(engine)
    with engine.begin() as conn:
        update_row(conn, "customers", hub["hotel"], {"zip": "9991"}, run_id=None, user="someone")
    who = latest_run(engine, "economic-relink", dry_run=True)["triggered_by"]  # as if the page's Apply was pressed
    start_job(engine, "economic-relink", APPLY, {"params": {"plan_id": plan_id}, "approved": []},
              user=who, role="operator")
    no_exception(settle(at, engine))
    assert "failed: the data this preview read has changed since; preview again" in texts(at)
    assert numbers(engine) == {hub["alfa"]: None, hub["hotel"]: None, hub["delta"]: 5}


def test_refused_tokens_stop_the_preview_and_say_so(engine, hub, sim, monkeypatch):
    monkeypatch.setenv("ECONOMIC_APP_SECRET_TOKEN", "wrong-secret")
    at = previewed(engine)
    shown = texts(at)
    assert "stopped early" in shown and "check ECONOMIC_APP_SECRET_TOKEN" in shown
    assert "What was written" not in shown  # a preview writes nothing
    assert not [b for b in at.button if b.key == "economic_apply"]


def test_missing_tokens_show_one_error(engine, hub, sim, monkeypatch):
    monkeypatch.delenv("ECONOMIC_AGREEMENT_GRANT_TOKEN")
    at = no_exception(app(PAGE).run())
    at.button(key="economic_preview").click().run()
    assert "ECONOMIC_AGREEMENT_GRANT_TOKEN" in texts(at) and sim.request_count == 0


def test_viewer_is_refused(engine, hub, sim, monkeypatch):
    monkeypatch.setenv("REQUIRE_LOGIN", "false")
    at = app(PAGE, user=signed_in("someone@example.com"))
    at.run()
    no_exception(at)
    assert "needs the operator role" in texts(at)
    assert not [b for b in at.button if b.key == "economic_preview"] and sim.request_count == 0
