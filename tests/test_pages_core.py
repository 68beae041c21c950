"""AppTest of the core pages against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import text

from lib.customers import create_customer, get_customer
from lib.runs import get_run, list_runs
from tests.apptest import app, no_exception, texts


def test_home_router_shows_dashboard_with_counts(engine):
    create_customer(engine, {"name": "Nordlys Rådgivning ApS", "cvr_number": "13585628"}, user="seed")
    create_customer(engine, {"name": "Uden CVR A/S"}, user="seed")
    at = no_exception(app("Home.py").run())
    shown = texts(at)
    assert "Customers=2" in shown and "Missing CVR=1" in shown and "Not linked to e-conomic=2" in shown
    assert "local admin" in shown  # the no-auth banner


def test_fresh_database_is_migrated_by_the_app(db_url):
    at = no_exception(app("Home.py").run())
    assert "Customers=0" in texts(at)
    assert "The register is empty" in texts(at)


def test_customers_page_search_edit_and_lock(engine):
    for name in ("Alfa ApS", "Beta A/S", "Østergaard & Søn A/S"):
        create_customer(engine, {"name": name}, user="seed")
    at = no_exception(app("app_pages/customers.py").run())
    assert "3 customers" in texts(at)
    at.text_input(key="customer_search").input("østergaard").run()
    assert "1 customers" in texts(at)
    cid = at.selectbox(key="customer_pick").value
    at.toggle(key=f"lock_{cid}").set_value(True).run()
    no_exception(at)
    assert get_customer(engine, cid)["subscriptions_locked"] is True
    at.text_input(key=f"e_{cid}_cvr_number").input("13585627")
    at.button(key="save_customer").click()  # first form's submit: Save changes
    at.run()
    assert "modulus-11" in texts(at)
    assert get_customer(engine, cid)["cvr_number"] is None
    at.text_input(key=f"e_{cid}_cvr_number").input("DK 13 58 56 28")
    at.button(key="save_customer").click()
    at.run()
    assert get_customer(engine, cid)["cvr_number"] == "13585628"


def test_runs_page_shows_changes_and_undoes_with_confirmation(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="local-admin")
    at = no_exception(app("app_pages/runs.py").run())
    run_id = at.selectbox(key="runs_pick").value
    assert get_run(engine, run_id)["kind"] == "customer-edit"
    undo = at.button(key=f"undo_{run_id}")
    assert undo.disabled
    at.checkbox(key=f"undo_ok_{run_id}").check().run()
    at.button(key=f"undo_{run_id}").click().run()
    no_exception(at)
    assert "undone as run" in texts(at)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers WHERE id = :id"), {"id": cid}).scalar() == 0
    assert list_runs(engine)[0]["kind"] == "undo"


def test_empty_dashboard_loads_demo_data_as_an_undoable_run(engine):
    at = no_exception(app("Home.py").run())
    next(b for b in at.button if b.label == "Load demo data").click().run()
    no_exception(at)
    customers = dashboard_counts_now(engine)
    assert customers > 10
    run = list_runs(engine)[0]
    assert run["kind"] == "demo-data" and run["stats"]["customers"] == customers
    assert [s.value for s in at.success] == [f"Loaded {customers} demo customers."]  # seen after the page's rerun


def dashboard_counts_now(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM customers")).scalar()
