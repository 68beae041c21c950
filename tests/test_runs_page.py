"""The Runs page reflects what just happened (issue #15): AppTest on SQLite and PostgreSQL."""

from __future__ import annotations

from lib.customers import create_customer, get_customer, update_customer
from lib.runs import get_run, list_runs
from tests.apptest import app, no_exception, texts


def test_after_undo_the_run_shows_undone_by_and_undo_is_disabled(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="local-admin")
    update_customer(engine, cid, {"city": "Aarhus"}, user="local-admin")
    edit = list_runs(engine)[0]["run_id"]
    at, stale = app("app_pages/runs.py"), app("app_pages/runs.py")  # two tabs on the same run
    for tab in (at, stale):
        tab.query_params["run"] = str(edit)
        no_exception(tab.run())
        assert tab.selectbox(key="runs_pick").value == edit and "Undone by=—" in texts(tab)
        tab.checkbox(key=f"undo_ok_{edit}").check().run()
    at.button(key=f"undo_{edit}").click().run()
    no_exception(at)
    undo = get_run(engine, edit)["undone_by_run_id"]
    assert undo is not None and get_customer(engine, cid)["city"] is None
    shown = texts(at)
    assert f"Undone by=#{undo}" in shown and f"Run {edit} undone as run {undo}" in shown
    assert at.selectbox(key="runs_pick").value == edit  # still the run that was undone
    assert at.button(key=f"undo_{edit}").disabled
    # the second click (the other tab, still showing Undo) explains itself and shows the run as it is now
    stale.button(key=f"undo_{edit}").click().run()
    no_exception(stale)
    shown = texts(stale)
    assert "already undone" in shown and f"Run {edit}: customer-edit" in shown and f"Undone by=#{undo}" in shown
    assert stale.button(key=f"undo_{edit}").disabled
    assert [r["kind"] for r in list_runs(engine)].count("undo") == 1


def test_an_undo_run_offers_redo_and_conflicts_are_judged_by_value(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="local-admin")
    update_customer(engine, cid, {"city": "Aarhus"}, user="local-admin")
    a = list_runs(engine)[0]["run_id"]
    update_customer(engine, cid, {"city": "Odense"}, user="local-admin")
    at = app("app_pages/runs.py")
    at.query_params["run"] = str(a)
    no_exception(at.run())
    assert f"customers#{cid}.city" not in texts(at)  # looked up only once a person means to undo
    at.checkbox(key=f"undo_ok_{a}").check().run()
    assert f"customers#{cid}.city" in texts(at)  # B still in effect: named
    update_customer(engine, cid, {"city": "Aarhus"}, user="local-admin")  # back to what A wrote
    no_exception(at.run())
    assert f"customers#{cid}.city" not in texts(at)
