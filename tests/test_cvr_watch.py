"""modules/cvr_watch against the cvrapi simulator with the demo data set, on SQLite and PostgreSQL:
alerts for the ceased/bankrupt and the renamed/moved company, quota-aware resumption, READ_ONLY and DRY_RUN,
acknowledge, taking the register's name through the audited path and undoing it."""

from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from lib.audit import insert_rows
from lib.customers import get_customer
from lib.errors import InputError, NotAllowed
from lib.jobs import runner
from lib.module_sandbox import drop_roles_of_schema
from lib.modules import enable_module, forget_discovery, health_report, module_code, save_module_settings
from lib.roles import Actor
from lib.runs import undo_run
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator, dataset, seed_demo
from tests.apptest import texts
from tests.conftest import ROOT

ADMIN = Actor("anna@bmc.dk", "admin")
OPERATOR = Actor("ole@bmc.dk", "operator")
VIEWER = Actor("vera@bmc.dk", "viewer")
RENAMED = dataset.by_key("noerrebro")
CEASED = dataset.by_key("graesroedder")


@pytest.fixture
def sim(monkeypatch):
    with CvrApiSimulator() as s:
        seed_demo(s)
        monkeypatch.setenv("CVR_API_URL", s.url)
        monkeypatch.setenv("CVR_USER_AGENT", SANDBOX_USER_AGENT)
        yield s


@pytest.fixture
def watch(engine, sim, tmp_path, monkeypatch):
    """cvr_watch copied into MODULES_DIR and enabled; the demo customers in the Hub."""
    root = tmp_path / "modules"
    shutil.copytree(ROOT / "modules" / "cvr_watch", root / "cvr_watch")
    monkeypatch.setenv("MODULES_DIR", str(root))
    forget_discovery()
    rows = [{"cvr_number": None, "zip": None, "city": None, **r} for r in dataset.hub_customers()]
    with engine.begin() as conn:
        ids = insert_rows(conn, "customers", rows, run_id=None, user="seed")
    enable_module(engine, "cvr_watch", ADMIN)
    yield dict(zip([r["name"] for r in rows], ids, strict=True))
    forget_discovery()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            db, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        drop_roles_of_schema(engine, db, schema)


def run(engine, actor=OPERATOR) -> dict:
    return runner.apply("cvr_watch.refresh", {}, (), actor, engine=engine)[1]


def live(engine, **extra) -> None:
    save_module_settings(engine, "cvr_watch", {"READ_ONLY": False, "DRY_RUN": False, **extra}, ADMIN)


def alerts(engine, **kw) -> list[dict]:
    return module_code("cvr_watch", "watch.py").list_alerts(engine, **kw)


def test_starts_in_dry_run_stores_nothing_but_reports_what_it_found(engine, watch):
    payload = run(engine)
    assert payload["module_dry_run"] and payload["dry_run"] and payload["checked"] == 4
    assert payload["alerts_found"] == 4 and payload["new_alerts"] == 0
    assert alerts(engine) == []


def test_finds_the_ceased_bankrupt_and_the_renamed_moved_company(engine, watch, sim):
    live(engine)
    payload = run(engine)
    assert payload["new_alerts"] == 4 and payload["lookups"] == 4 and not payload["errors"]
    found = {(a["customer_name"], a["kind"]): a for a in alerts(engine)}
    assert set(found) == {(CEASED.name, "ceased"), (CEASED.name, "bankruptcy"), (RENAMED.name, "name"),
                          (RENAMED.name, "address")}
    assert found[(RENAMED.name, "name")]["shown_new"] == "Nørrebro Cykelværksted ApS"
    assert found[(RENAMED.name, "address")]["shown_new"] == "Jagtvej 12, 2200 København N"
    assert found[(CEASED.name, "bankruptcy")]["shown_new"] == "Under konkursbehandling"
    assert found[(CEASED.name, "ceased")]["shown_new"] == "ceased 2026-09-30"
    # a second run raises nothing twice and, within RECHECK_DAYS, asks nobody
    again = run(engine)
    assert again["checked"] == 0 and again["fresh"] == 4 and again["lookups"] == 0 and again["new_alerts"] == 0


def test_alert_switches_decide_which_changes_raise_an_alert(engine, watch):
    live(engine, ALERT_NAME=False, ALERT_ADDRESS=False)
    assert run(engine)["new_alerts"] == 2
    assert {a["kind"] for a in alerts(engine)} == {"ceased", "bankruptcy"}


def test_quota_stops_cleanly_and_the_next_run_resumes(engine, watch, sim):
    live(engine, LOOKUPS_PER_RUN=1000)
    sim.quota = 2
    first = run(engine)
    assert first["checked"] == 2 and first["left_for_next_run"] == 2 and "quota" in first["stopped"]
    sim.quota = 100
    sim.used.clear()
    with engine.begin() as conn:  # the next day: yesterday's quota mark no longer applies
        conn.execute(text("DELETE FROM cvr_cache WHERE query_key LIKE '_quota_exhausted:%'"))
        conn.execute(text("UPDATE cvr_cache SET fetched_at = fetched_at - INTERVAL '1 day'") if
                     engine.dialect.name == "postgresql" else
                     text("UPDATE cvr_cache SET fetched_at = datetime(fetched_at, '-1 day')"))
    second = run(engine)
    assert second["checked"] == 2 and second["fresh"] == 2 and not second.get("stopped")
    assert len({a["customer_id"] for a in alerts(engine)}) == 2


def test_lookups_per_run_spends_at_most_that_many_and_cached_answers_are_free(engine, watch, sim):
    live(engine, LOOKUPS_PER_RUN=1)
    first = run(engine)
    assert first["lookups"] == 1 and first["left_for_next_run"] == 3
    second = run(engine)
    assert second["lookups"] == 1 and second["checked"] == 1


def test_read_only_never_writes_customers_and_dry_run_only_shows(engine, watch):
    save_module_settings(engine, "cvr_watch", {"DRY_RUN": False}, ADMIN)
    run(engine)
    name_alert = next(a for a in alerts(engine) if a["kind"] == "name")
    take = module_code("cvr_watch", "watch.py").take_register_value
    with pytest.raises(InputError, match="READ_ONLY"):
        take(engine, name_alert["id"], OPERATOR)
    save_module_settings(engine, "cvr_watch", {"READ_ONLY": False, "DRY_RUN": True}, ADMIN)
    shown = take(engine, name_alert["id"], OPERATOR)
    assert shown["dry_run"] and shown["changes"] == {"name": "Nørrebro Cykelværksted ApS"}
    assert get_customer(engine, watch[RENAMED.name])["name"] == RENAMED.name


def test_take_the_registers_name_and_address_then_undo(engine, watch):
    live(engine)
    run(engine)
    code = module_code("cvr_watch", "watch.py")
    by_kind = {a["kind"]: a for a in alerts(engine) if a["customer_name"] == RENAMED.name}
    with pytest.raises(NotAllowed):
        code.take_register_value(engine, by_kind["name"]["id"], VIEWER)
    result = code.take_register_value(engine, by_kind["name"]["id"], OPERATOR)
    customer_id = watch[RENAMED.name]
    assert get_customer(engine, customer_id)["name"] == "Nørrebro Cykelværksted ApS" and result["run_id"]
    moved = code.take_register_value(engine, by_kind["address"]["id"], OPERATOR)
    assert get_customer(engine, customer_id)["address"] == "Jagtvej 12"
    undo_run(engine, moved["run_id"], user=OPERATOR.email, role=OPERATOR.role)
    undo_run(engine, result["run_id"], user=OPERATOR.email, role=OPERATOR.role)
    assert get_customer(engine, customer_id)["name"] == RENAMED.name
    assert get_customer(engine, customer_id)["address"] == RENAMED.address
    shown = {a["kind"]: a for a in alerts(engine, include_acknowledged=True) if a["customer_id"] == customer_id}
    assert shown["name"]["hub_matches"] is False  # after the undo it can be taken again


def test_acknowledge_hides_an_alert_and_viewers_cannot(engine, watch):
    live(engine)
    run(engine)
    code = module_code("cvr_watch", "watch.py")
    first = alerts(engine)[0]
    with pytest.raises(NotAllowed):
        code.acknowledge(engine, first["id"], VIEWER)
    code.acknowledge(engine, first["id"], OPERATOR)
    assert first["id"] not in {a["id"] for a in alerts(engine)}
    with pytest.raises(InputError, match="already acknowledged"):
        code.acknowledge(engine, first["id"], OPERATOR)


def test_health_and_the_page(engine, watch):
    live(engine)
    run(engine)
    health = {h["name"]: h for h in health_report(engine)}["cvr_watch"]
    assert health["healthy"] is True and "4 open alert(s)" in health["message"]
    at = AppTest.from_string(
        "from ui.module_pages import render_module_page\nrender_module_page('cvr_watch', 'page.py')\n",
        default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Nørrebro Cykelværksted ApS" in texts(at) and "Under konkursbehandling" in texts(at)
    ack = next(b for b in at.button if b.key and b.key.startswith("cvr_watch_ack_"))
    ack.click().run()
    assert "acknowledged" in texts(at)


def test_cli_job_run_previews_applies_and_refuses_viewers(engine, watch, monkeypatch, capsys):
    from lib.cli import main

    live(engine)
    assert main(["job", "run", "cvr_watch.refresh", "--json"]) == 0  # a preview stores nothing
    assert json.loads(capsys.readouterr().out)["dry_run"] is True and alerts(engine) == []
    assert main(["job", "run", "cvr_watch.refresh", "--apply", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["new_alerts"] == 4 and payload["run_id"] and len(alerts(engine)) == 4
    monkeypatch.setenv("HUB_CLI_ROLE", "viewer")
    assert main(["job", "run", "cvr_watch.refresh", "--apply"]) == 2
