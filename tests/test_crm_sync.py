"""CRM sync against the vTiger simulator in both modes (vtiger, simply), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.crm_sync import (
    apply_crm_sync,
    apply_crm_write_back,
    dry_run_payload,
    plan_crm_sync,
    plan_crm_write_back,
    run_crm_sync,
)
from lib.cvr import make_cvr
from lib.errors import ConfigError, NotAllowed
from lib.http_session import make_session
from lib.roles import Actor
from lib.runs import get_run, run_changes, undo_run
from lib.sandbox import VtigerSimulator, dataset, make_account, seed_demo
from lib.vtiger_client import VtigerClient

ADMIN = Actor("anna@bmc.dk", "admin")
CVR_A, CVR_B, CVR_C = make_cvr(11), make_cvr(12), make_cvr(13)


@pytest.fixture(params=["vtiger", "simply"])
def sim(request):
    with VtigerSimulator(mode=request.param) as s:
        yield s


def source_of(sim: VtigerSimulator) -> str:
    return "simplycrm" if sim.mode == "simply" else "vtiger"


def client_for(sim: VtigerSimulator, **kw) -> VtigerClient:
    return VtigerClient(sim.url, sim.username, sim.access_key, name=source_of(sim),
                        supports_revise=sim.mode != "simply", session=make_session(backoff=0), **kw)


def add_customers(engine, rows: list[dict]) -> list[int]:
    cols = ("name", "cvr_number", "vtiger_account_id", "simplycrm_account_id", "zip", "city")
    with engine.begin() as conn:
        return insert_rows(conn, "customers", [{c: r.get(c) for c in cols} for r in rows], run_id=None, user="seed")


def customer(engine, cid: int) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT * FROM customers WHERE id = :id"), {"id": cid}).mappings().one())


def sync(engine, sim, approved=(), **kw) -> tuple[dict, object]:
    with client_for(sim, **kw) as client:
        plan = plan_crm_sync(engine, client)
    return apply_crm_sync(engine, plan, actor=ADMIN, approved=approved), plan


def test_demo_data_set(engine, sim):
    """The shared demo data: fills, links, the invalid CVR and (Simply-CRM) the conflicting CVR."""
    seed_demo(sim)
    ids = add_customers(engine, dataset.hub_customers())
    names = {customer(engine, i)["name"]: i for i in ids}
    with client_for(sim) as client:
        plan = plan_crm_sync(engine, client)
    outcomes = {p.account_name: p.outcome for p in plan.proposals}
    preview = dry_run_payload(plan)
    if sim.mode == "vtiger":
        assert outcomes == {"Blåbærgården Ærø ApS": "unchanged", "Økologisk Rådgivning ApS": "fill",
                            "Møller & Søn Tømrerfirma A/S": "fill", "Vestjysk Tag & Facade ApS": "link",
                            "Søstrene Åbjerg Design ApS": "fill"}
        assert {k: preview[k] for k in ("accounts", "updated", "unchanged", "conflicts", "unmatched", "linked")} == {
            "accounts": 5, "updated": 3, "unchanged": 2, "conflicts": 0, "unmatched": 0, "linked": 3}
        assert any("27421807" in e["message"] and "not a valid CVR" in e["message"] for e in preview["errors"])
    else:
        assert outcomes == {"Sønderjysk Revision A/S": "unchanged", "Kærgård Bryggeri ApS": "fill",
                            "Græsrødder Landskab ApS": "conflict"}
        assert (preview["updated"], preview["conflicts"], preview["linked"]) == (1, 1, 0)
    assert preview["run_id"] is None and preview["dry_run"] is True
    payload = apply_crm_sync(engine, plan, actor=ADMIN)
    assert {k: payload[k] for k in ("updated", "conflicts", "linked")} == {
        k: preview[k] for k in ("updated", "conflicts", "linked")}
    if sim.mode == "vtiger":
        moeller = customer(engine, names["Møller & Søn Tømrerfirma"])
        assert moeller["cvr_number"] == dataset.by_key("moeller").cvr and moeller["vtiger_account_id"] == "11x4203"
        vestjysk = customer(engine, names["Vestjysk Tag & Facade ApS"])
        assert vestjysk["cvr_number"] is None and vestjysk["vtiger_account_id"] == "11x4210"
    else:
        graes = customer(engine, names["Græsrødder Landskab ApS"])
        assert graes["cvr_number"] == dataset.by_key("graesroedder").cvr and graes["simplycrm_account_id"] is None
    assert sim.counts["update"] == sim.counts["revise"] == sim.counts["create"] == 0  # the CRM is only read


def test_more_than_100_accounts_paged_completely(engine, sim):
    """250 accounts over 4 pages (100-row cap): odd ones link by CVR, even ones fill through the stored id."""
    sim.accounts = [make_account(i, f"Kunde nummer {i} ApS", cvr=make_cvr(i)) for i in range(1, 251)]
    col = f"{source_of(sim)}_account_id"
    add_customers(engine, [{"name": f"Hub navn {i}", "cvr_number": make_cvr(i)} if i % 2 else
                           {"name": f"Hub navn {i}", col: f"11x{i}"} for i in range(1, 251)])
    payload, plan = sync(engine, sim)
    assert payload["accounts"] == 250 and len({p.account_id for p in plan.proposals}) == 250
    assert (payload["updated"], payload["linked"], payload["unmatched"], payload["conflicts"]) == (125, 125, 0, 0)
    queries = [r.query["query"] for r in sim.requests if r.label == "query"]
    assert [q for q in queries if "LIMIT" in q] == [
        f"SELECT * FROM Accounts ORDER BY id LIMIT {o},100;" for o in (0, 100, 200, 300)]
    with engine.connect() as conn:
        filled = conn.execute(text(f"SELECT count(*) FROM customers WHERE cvr_number IS NOT NULL AND {col} IS NOT NULL"))
        assert filled.scalar() == 250


def test_cvr_field_found_via_describe_and_configured(engine, sim):
    sim.cvr_field, sim.cvr_label = "cf_991", "CVR nr."
    sim.accounts = [make_account(7, "Kærgård Bryggeri ApS", cvr="DK 13 58 56 28", cvr_field="cf_991")]
    cid = add_customers(engine, [{"name": "Kærgård Bryggeri ApS"}])[0]
    payload, plan = sync(engine, sim)
    assert plan.cvr_field == "cf_991" and sim.counts["describe"] == 1
    assert payload["updated"] == 1 and customer(engine, cid)["cvr_number"] == "13585628"  # "DK 12 34 56 78" form

    sim.reset_counters()
    sim.accounts = [make_account(8, "Nordlys ApS", cvr="", siccode=CVR_A)]
    cid2 = add_customers(engine, [{"name": "Nordlys ApS"}])[0]
    payload, plan = sync(engine, sim, cvr_field="siccode")
    assert plan.cvr_field == "siccode" and sim.counts["describe"] == 0
    assert customer(engine, cid2)["cvr_number"] == CVR_A


def test_expired_session_mid_run_is_recovered(engine, sim):
    sim.accounts = [make_account(i, f"Kunde {i}", cvr=make_cvr(i)) for i in range(1, 181)]
    add_customers(engine, [{"name": f"Kunde {i}", "cvr_number": make_cvr(i)} for i in range(1, 181)])
    sim.expire_session_after_queries = 2  # the count and the first page, then the session is gone
    sim.expiry_code = "SESSION_EXPIRED"
    payload, _ = sync(engine, sim)
    assert sim.counts["login"] == 2
    assert payload["accounts"] == 180 and payload["linked"] == 180 and "stopped" not in payload


def test_conflict_reported_not_overwritten_then_taken_on_approval_and_undone(engine, sim):
    col = f"{source_of(sim)}_account_id"
    sim.accounts = [make_account(1, "Alfa ApS", cvr=CVR_B)]
    cid = add_customers(engine, [{"name": "Alfa ApS", "cvr_number": CVR_A, col: "11x1"}])[0]
    payload, plan = sync(engine, sim)
    [p] = plan.proposals
    assert p.outcome == "conflict" and p.approvable and (p.hub_cvr, p.crm_cvr) == (CVR_A, CVR_B)
    assert payload["conflicts"] == 1 and payload["updated"] == 0
    assert any(CVR_A in e["message"] and CVR_B in e["message"] for e in payload["errors"])
    assert customer(engine, cid)["cvr_number"] == CVR_A
    taken, _ = sync(engine, sim, approved={p.key})
    assert taken["updated"] == 1 and taken["conflicts"] == 0
    assert customer(engine, cid)["cvr_number"] == CVR_B
    [change] = run_changes(engine, taken["run_id"])
    assert (change["field"], change["old_value"], change["new_value"]) == ("cvr_number", CVR_A, CVR_B)
    undo_run(engine, taken["run_id"], user=ADMIN.email)
    assert customer(engine, cid)["cvr_number"] == CVR_A


def test_two_sources_disagreeing_is_a_conflict(engine):
    """vTiger fills the CVR; Simply-CRM says otherwise for the same customer: a conflict naming vTiger's run."""
    cid = add_customers(engine, [{"name": "Beta ApS", "vtiger_account_id": "11x1", "simplycrm_account_id": "11x9"}])[0]
    with VtigerSimulator() as vt, VtigerSimulator(mode="simply") as simply:
        vt.accounts = [make_account(1, "Beta ApS", cvr=CVR_A)]
        simply.accounts = [make_account(9, "Beta ApS", cvr=CVR_B)]
        first, _ = sync(engine, vt)
        second, plan = sync(engine, simply)
    assert first["updated"] == 1 and second["conflicts"] == 1 and second["updated"] == 0
    [p] = plan.proposals
    assert p.cvr_source == f"vTiger (run {first['run_id']})"
    assert any("the two CRMs disagree" in r for r in p.reasons)
    assert customer(engine, cid)["cvr_number"] == CVR_A


def test_invalid_cvr_rejected_and_taken_cvr_not_written(engine, sim):
    col = f"{source_of(sim)}_account_id"
    sim.accounts = [make_account(1, "Gamma ApS", cvr="13585627"),  # fails modulus 11
                    make_account(2, "Delta ApS", cvr=CVR_C)]
    gamma, delta, holder = add_customers(engine, [
        {"name": "Gamma ApS"}, {"name": "Delta ApS", col: "11x2"}, {"name": "Epsilon A/S", "cvr_number": CVR_C}])
    payload, plan = sync(engine, sim)
    by_name = {p.account_name: p for p in plan.proposals}
    assert by_name["Gamma ApS"].outcome == "link" and customer(engine, gamma)["cvr_number"] is None
    assert customer(engine, gamma)[col] == "11x1"
    assert by_name["Delta ApS"].outcome == "conflict" and not by_name["Delta ApS"].approvable
    assert customer(engine, delta)["cvr_number"] is None and customer(engine, holder)["cvr_number"] == CVR_C
    messages = " | ".join(e["message"] for e in payload["errors"])
    assert "'13585627' is not a valid CVR" in messages and f"CVR {CVR_C} already belongs to customer {holder}" in messages
    assert {"account_id": "11x1", "customer_id": gamma} == {k: v for k, v in payload["errors"][0].items() if k != "message"}
    # approving the unapprovable changes nothing
    again, _ = sync(engine, sim, approved={by_name["Delta ApS"].key})
    assert again["updated"] == 0 and customer(engine, delta)["cvr_number"] is None


def test_account_ids_stored_stale_link_replaced_and_undo(engine, sim):
    col = f"{source_of(sim)}_account_id"
    sim.accounts = [make_account(1, "Zeta Rådgivning ApS", cvr=CVR_A, bill_code="8000"),
                    make_account(2, "Eta Consult ApS", cvr="", bill_code="5000")]
    zeta, eta = add_customers(engine, [{"name": "Zeta Rådgivning", "zip": "8000", col: "11x777"},
                                      {"name": "Eta Consult ApS", "zip": "5000"}])
    payload, plan = sync(engine, sim)
    assert payload["linked"] == 2 and payload["updated"] == 1
    assert any("replaces the stale link 11x777" in r for r in plan.proposals[0].reasons)
    assert (customer(engine, zeta)[col], customer(engine, zeta)["cvr_number"]) == ("11x1", CVR_A)
    assert customer(engine, eta)[col] == "11x2"
    run = get_run(engine, payload["run_id"])
    assert run["kind"] == "crm-sync" and run["parameters"]["source"] == source_of(sim)
    assert run["stats"]["linked"] == 2
    undo_run(engine, payload["run_id"], user=ADMIN.email)
    assert (customer(engine, zeta)[col], customer(engine, zeta)["cvr_number"]) == ("11x777", None)
    assert customer(engine, eta)[col] is None
    # a second run finds everything linked and changes nothing more after re-applying
    sync(engine, sim)
    again, _ = sync(engine, sim)
    assert (again["updated"], again["linked"], again["unchanged"]) == (0, 0, 2)


def test_ambiguous_needs_approval(engine, sim):
    sim.accounts = [make_account(1, "Nordlys Consult ApS", cvr=CVR_B)]
    first, second = add_customers(engine, [{"name": "Nordlys Consult ApS", "zip": "8000"},
                                           {"name": "Nordlys Consult A/S", "zip": "8000"}])
    payload, plan = sync(engine, sim)
    [p] = plan.proposals
    assert p.outcome == "ambiguous" and payload["ambiguous"] == 1 and payload["linked"] == 0
    assert customer(engine, first)["cvr_number"] is None and customer(engine, second)["cvr_number"] is None
    approved, _ = sync(engine, sim, approved={p.key})
    assert approved["linked"] == 1 and approved["updated"] == 1
    linked = customer(engine, p.customer_id)
    assert linked["cvr_number"] == CVR_B and linked[f"{source_of(sim)}_account_id"] == "11x1"


def test_changed_since_preview_is_not_overwritten(engine, sim):
    sim.accounts = [make_account(1, "Theta ApS", cvr=CVR_A)]
    cid = add_customers(engine, [{"name": "Theta ApS"}])[0]
    with client_for(sim) as client:
        plan = plan_crm_sync(engine, client)
    with engine.begin() as conn:
        conn.execute(text("UPDATE customers SET cvr_number = :c WHERE id = :id"), {"c": CVR_B, "id": cid})
    payload = apply_crm_sync(engine, plan, actor=ADMIN)
    assert payload["updated"] == 0 and customer(engine, cid)["cvr_number"] == CVR_B
    assert any("changed since the preview" in e["message"] for e in payload["errors"])


def test_service_failure_mid_read_keeps_what_was_read(engine, sim):
    sim.accounts = [make_account(i, f"Kunde {i}", cvr=make_cvr(i)) for i in range(1, 151)]
    col = f"{source_of(sim)}_account_id"
    add_customers(engine, [{"name": f"Kunde {i}", col: f"11x{i}"} for i in range(1, 151)])
    sim.inject(500, times=10, when=lambda r: "LIMIT 100,100" in r.query.get("query", ""))
    with client_for(sim) as client:
        client.session.adapters["http://"].max_retries.total = 0
        payload = run_crm_sync(engine, source=source_of(sim), apply=True, actor=ADMIN, client=client)
    assert "after reading 100 account(s)" in payload["stopped"]
    assert payload["accounts"] == 100 and payload["updated"] == 100
    assert get_run(engine, payload["run_id"])["status"] == "stopped"


def test_viewer_cannot_apply_and_nothing_is_requested(engine, sim):
    with client_for(sim) as client, pytest.raises(NotAllowed):
        run_crm_sync(engine, source=source_of(sim), apply=True, actor=Actor("v@bmc.dk", "viewer"), client=client)
    assert sim.request_count == 0


def test_write_back_fills_empty_crm_field(engine, sim, monkeypatch):
    col = f"{source_of(sim)}_account_id"
    sim.accounts = [make_account(1, "Iota ApS", cvr="", email1="iota@example.dk"),
                    make_account(2, "Kappa ApS", cvr=""), make_account(3, "Lambda ApS", cvr="")]
    add_customers(engine, [{"name": "Iota ApS", "cvr_number": CVR_A, col: "11x1"},
                           {"name": "Kappa ApS", "cvr_number": CVR_B},
                           {"name": "Lambda ApS", "cvr_number": CVR_C, col: "11x3"}])
    with client_for(sim) as client, pytest.raises(ConfigError, match="CRM_WRITE_BACK"):
        plan_crm_write_back(engine, client)
    assert sim.request_count == 0
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    with client_for(sim) as client:
        sync_plan = plan_crm_sync(engine, client)
        wb = plan_crm_write_back(engine, client, sync_plan=sync_plan)
        assert sorted((w.account_id, w.cvr, w.linked_by) for w in wb.proposals) == [
            ("11x1", CVR_A, "stored link"), ("11x2", CVR_B, "this sync's link"), ("11x3", CVR_C, "stored link")]
        sim.accounts[2]["cf_853"] = CVR_C  # someone fills it in the CRM meanwhile
        sim.reset_counters()
        done = apply_crm_write_back(engine, client, wb, actor=ADMIN)
    assert (done["written"], done["skipped"]) == (3 - 1, 1)
    assert sim.accounts[0]["cf_853"] == CVR_A and sim.accounts[0]["email1"] == "iota@example.dk"
    assert sim.accounts[1]["cf_853"] == CVR_B
    if sim.mode == "simply":
        assert sim.counts["revise"] == 0 and sim.counts["update"] == 2
    else:
        assert sim.counts["revise"] == 2 and sim.counts["update"] == 0
    assert get_run(engine, done["run_id"])["kind"] == "crm-write-back"


def test_write_back_stopped_by_an_outage_keeps_what_was_written_and_closes_its_run(engine, sim, monkeypatch):
    """The write-back goes through the job runner: a service failure after the first account ends the run as
    `stopped` with what was written, its lock released and its progress on the run."""
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    col = f"{source_of(sim)}_account_id"
    sim.accounts = [make_account(i, f"Konto {i} ApS", cvr="") for i in (1, 2, 3)]
    add_customers(engine, [{"name": f"Konto {i} ApS", "cvr_number": make_cvr(i), col: f"11x{i}"} for i in (1, 2, 3)])
    with client_for(sim) as client:
        wb = plan_crm_write_back(engine, client, sync_plan=plan_crm_sync(engine, client))
        sim.inject(500, times=5, when=lambda r: r.label in ("revise", "update") and "11x2" in r.form.get("element", ""))
        done = apply_crm_write_back(engine, client, wb, actor=ADMIN)
    assert done["written"] == 1 and "after writing 1 of 3 account(s)" in done["stopped"]
    assert [a["cf_853"] for a in sim.accounts] == [make_cvr(1), "", ""]
    run = get_run(engine, done["run_id"])
    assert (run["kind"], run["status"]) == ("crm-write-back", "stopped") and "after writing 1 of 3" in run["error"]
    assert run["stats"]["accounts_written"] == ["11x1"] and run["progress_total"] == 3
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run_locks")).scalar_one() == 0


def test_run_crm_sync_write_back_refused_when_off(engine, sim):
    with client_for(sim) as client, pytest.raises(ConfigError):
        run_crm_sync(engine, source=source_of(sim), apply=False, actor=ADMIN, client=client, write_back=True)
    assert sim.request_count == 0
