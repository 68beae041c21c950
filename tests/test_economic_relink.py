"""economic-relink against the e-conomic simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from bench.matching_dataset import make_dataset
from lib.audit import insert_rows
from lib.cvr import make_cvr
from lib.economic_client import EconomicClient
from lib.economic_relink import (
    COUNT_KEYS,
    apply_economic_relink,
    import_unlinked_customers,
    plan_economic_relink,
    preview_import,
    run_economic_relink,
)
from lib.errors import ConfigError, NotAllowed
from lib.http_session import make_session
from lib.roles import Actor
from lib.runs import list_runs, run_changes, undo_run
from lib.sandbox import EconomicSimulator, make_customer

ADMIN = Actor("tester@bmc.dk", "admin", "cli")
VIEWER = Actor("viewer@bmc.dk", "viewer", "cli")
STALE_BASE = 900_000


@pytest.fixture
def sim():
    with EconomicSimulator() as s:
        yield s


def client_for(sim: EconomicSimulator, secret: str | None = None) -> EconomicClient:
    # no backoff between retries; Retry-After still applies
    return EconomicClient(sim.url, secret or sim.app_secret_token, sim.agreement_grant_token,
                          session=make_session(backoff=0))


def seed_hub(engine, rows: list[dict]) -> list[int]:
    full = [{"name": r["name"], "cvr_number": r.get("cvr_number"),
             "economic_customer_number": r.get("economic_customer_number"), "zip": r.get("zip"),
             "city": r.get("city")} for r in rows]
    with engine.begin() as conn:
        return insert_rows(conn, "customers", full, run_id=None, user="seed")


def links(engine) -> dict[int, int | None]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, economic_customer_number FROM customers")).all())


def run_job(engine, sim, *, apply: bool, actor: Actor = ADMIN) -> dict:
    with client_for(sim) as c:
        return run_economic_relink(engine, apply=apply, actor=actor, client=c)


# --- the labelled data set: variants and decoys -------------------------------------------------------

def load_dataset(engine, sim, n_hub: int = 700, n_outside: int = 2100, seed: int = 11):
    """Seed e-conomic with the outside records (CVRs as free text) and the Hub with the customers.

    10 % of the true pairs are linked already, 5 % carry a number that no longer exists in e-conomic.
    Returns (hub key → customer id, outside key → e-conomic number, truth as customer id → number).
    """
    data = make_dataset(n_hub, n_outside, seed=seed)
    number_of = {rec.key: 10_000 + i for i, rec in enumerate(data.outside)}
    sim.customers = [make_customer(number_of[r.key], r.name, cvr=r.cvr, zip=r.zip, city=r.city)
                     for r in data.outside]
    rows = []
    for i, rec in enumerate(data.hub):
        twin = data.truth.get(rec.key)
        link = None
        if twin is not None and i % 10 == 0:
            link = number_of[twin]
        elif i % 20 == 5:
            link = STALE_BASE + i
        rows.append({"name": rec.name, "cvr_number": rec.cvr, "zip": rec.zip, "city": rec.city,
                     "economic_customer_number": link})
    ids = seed_hub(engine, rows)
    id_of = {rec.key: cid for rec, cid in zip(data.hub, ids, strict=True)}
    truth = {id_of[h]: number_of[o] for h, o in data.truth.items()}
    return id_of, number_of, truth


def test_applied_links_are_precise_and_complete(engine, sim):
    """Precision of applied links ≥ 0.99, recall ≥ 0.95; stale numbers are re-linked; 3 pages = 3 requests."""
    _, _, truth = load_dataset(engine, sim)
    before = links(engine)
    payload = run_job(engine, sim, apply=True)
    assert sim.counts["/customers"] == 3 and sim.request_count == 3  # 2,100 customers, pagesize 1000
    assert {r.query.get("pagesize") for r in sim.requests} == {"1000"}
    after = links(engine)
    applied = {cid: n for cid, n in after.items() if n != before[cid]}
    correct = sum(1 for cid, n in applied.items() if truth.get(cid) == n)
    precision = correct / len(applied)
    recall = sum(1 for cid, n in truth.items() if after[cid] == n) / len(truth)
    assert precision >= 0.99, precision
    assert recall >= 0.95, recall
    assert payload["linked"] == len(applied) and payload["run_id"] is not None and payload["dry_run"] is False
    stale_relinked = [cid for cid, n in before.items() if n and n >= STALE_BASE and after[cid] != n]
    assert stale_relinked and payload["changed"] == len(stale_relinked)
    assert all(after[cid] == n for cid, n in before.items() if n and n < STALE_BASE)  # correct links kept
    assert sum(payload[k] for k in ("linked", "unchanged", "ambiguous", "unmatched")) == payload["hub_customers"]
    changes = run_changes(engine, payload["run_id"])
    assert len(changes) == len(applied) and {c["field"] for c in changes} == {"economic_customer_number"}


def test_dry_run_counts_are_what_apply_does_and_undo_restores(engine, sim):
    load_dataset(engine, sim, n_hub=250, n_outside=400, seed=5)
    before = links(engine)
    preview = run_job(engine, sim, apply=False)
    assert preview["run_id"] is None and preview["dry_run"] is True
    assert links(engine) == before and list_runs(engine) == []
    applied = run_job(engine, sim, apply=True)
    assert {k: applied[k] for k in COUNT_KEYS} == {k: preview[k] for k in COUNT_KEYS}
    assert links(engine) != before
    again = run_job(engine, sim, apply=False)
    assert again["linked"] == 0 and again["unchanged"] == preview["unchanged"] + preview["linked"]
    undo_run(engine, applied["run_id"], user=ADMIN.email)
    assert links(engine) == before


# --- rules, one case each -------------------------------------------------------------------------------

A, B, C, D, E, F = (make_cvr(n) for n in (101, 102, 103, 104, 105, 106))


def rules_setup(engine, sim) -> dict[str, int]:
    sim.customers = [
        make_customer(1, "Alfa Rådgivning ApS", cvr=f"DK {A[:2]} {A[2:4]} {A[4:6]} {A[6:]}"),  # free-text CVR
        make_customer(2, "Bravo Byg A/S", cvr=B),
        make_customer(3, "Charlie Cykler ApS", zip="8000"),
        make_customer(4, "Delta Data ApS", cvr=D),
        make_customer(5, "Ekko Elektronik A/S", cvr=E, barred=True),
        make_customer(6, "Foxtrot Finans ApS", cvr=F),
        make_customer(7, "Golf Gartneri ApS", cvr=make_cvr(107)),
        make_customer(8, "Hotel Havblik ApS", zip="9990"),
        make_customer(9, "Hotel Havblik ApS", zip="9990"),
        make_customer(10, "Indigo Isolering ApS", cvr=make_cvr(110)),
        make_customer(11, "Juliet Jern ApS"),
    ]
    names = ["alfa", "bravo", "charlie", "delta", "ekko", "foxtrot", "golf", "hotel", "indigo", "kilo", "lima"]
    rows = [
        {"name": "Alfa Rådgivning", "cvr_number": A},                               # new, by normalised CVR
        {"name": "Bravo Byg A/S", "cvr_number": B, "economic_customer_number": 2},  # unchanged
        {"name": "Charlie Cykler", "economic_customer_number": 77, "zip": "8000"},  # stale → changed (auto)
        {"name": "Delta Data ApS", "cvr_number": D, "economic_customer_number": 11},  # existing link, other match
        {"name": "Ekko Elektronik", "cvr_number": E},                              # new, barred
        {"name": "Foxtrot Finans ApS", "cvr_number": C, "economic_customer_number": 6},  # CVR conflict: kept
        {"name": "Golf Gartneri ApS", "cvr_number": make_cvr(207)},               # differing CVRs veto
        {"name": "Hotel Havblik", "zip": "9990"},                                   # ambiguous (two records)
        {"name": "Indigo Isolering ApS", "economic_customer_number": 10},          # holds 10
        {"name": "Indigo Isolering", "cvr_number": make_cvr(110)},                 # matches 10 by CVR: claimed
        {"name": "Lima Låse ApS"},                                                  # unmatched
    ]
    return dict(zip(names, seed_hub(engine, rows), strict=True))


def test_rules_outcomes_and_problems(engine, sim):
    ids = rules_setup(engine, sim)
    with client_for(sim) as c:
        plan = plan_economic_relink(engine, c)
    by = {p.customer_id: p for p in plan.proposals}
    assert (by[ids["alfa"]].outcome, by[ids["alfa"]].economic_number, by[ids["alfa"]].auto) == ("new", 1, True)
    assert by[ids["bravo"]].outcome == "unchanged"
    charlie = by[ids["charlie"]]
    assert (charlie.outcome, charlie.current_number, charlie.current_exists, charlie.economic_number, charlie.auto) == (
        "changed", 77, False, 3, True)
    delta = by[ids["delta"]]  # shows both: linked to Juliet Jern (11), the engine says Delta Data (4)
    assert (delta.outcome, delta.auto, delta.approvable) == ("changed", False, True)
    assert (delta.current_name, delta.economic_name, delta.economic_cvr) == ("Juliet Jern ApS", "Delta Data ApS", D)
    assert by[ids["ekko"]].outcome == "new" and by[ids["ekko"]].barred
    foxtrot = by[ids["foxtrot"]]
    assert foxtrot.outcome == "conflict" and not foxtrot.auto and not foxtrot.approvable
    assert by[ids["golf"]].outcome == "unmatched"  # same name, different valid CVRs: never a name match
    hotel = by[ids["hotel"]]
    assert hotel.outcome == "ambiguous" and {c.number for c in hotel.candidates} == {8, 9} and hotel.approvable
    assert by[ids["indigo"]].outcome == "unchanged"
    kilo = by[ids["kilo"]]
    assert kilo.outcome == "ambiguous" and kilo.economic_number == 10 and not kilo.approvable
    assert by[ids["lima"]].outcome == "unmatched"
    kinds = {(p["kind"], p["customer_id"]) for p in plan.problems}
    assert {("stale_link", ids["charlie"]), ("cvr_conflict", ids["foxtrot"]), ("barred", ids["ekko"]),
            ("duplicate_claim", ids["kilo"])} <= kinds
    assert plan.counts() == {"hub_customers": 11, "economic_customers": 11, "linked": 3, "changed": 1,
                             "unchanged": 2, "ambiguous": 4, "unmatched": 2}
    assert plan.counts({delta.key, hotel.key})["linked"] == 5
    assert plan.counts({delta.key, hotel.key})["changed"] == 2


def test_cli_apply_keeps_existing_links_and_writes_only_automatic_ones(engine, sim):
    ids = rules_setup(engine, sim)
    before = links(engine)
    payload = run_job(engine, sim, apply=True)
    after = links(engine)
    assert (payload["linked"], payload["changed"]) == (3, 1)
    assert after[ids["alfa"]] == 1 and after[ids["charlie"]] == 3 and after[ids["ekko"]] == 5
    for name in ("delta", "foxtrot", "indigo", "bravo"):
        assert after[ids[name]] == before[ids[name]]  # existing links are kept
    for name in ("golf", "hotel", "kilo", "lima"):
        assert after[ids[name]] is None
    messages = {e["customer_id"]: e["message"] for e in payload["errors"]}
    assert "contradicts" in messages[ids["foxtrot"]] and "no longer exists" in messages[ids["charlie"]]
    assert "already holds" in messages[ids["kilo"]] and "barred" in messages[ids["ekko"]]
    assert not any(r.method != "GET" for r in sim.requests)  # e-conomic is only read


def test_page_apply_with_approvals_and_unique_numbers(engine, sim):
    """Approved changed/ambiguous rows are written; a number taken since the preview is never written twice."""
    ids = rules_setup(engine, sim)
    with client_for(sim) as c:
        plan = plan_economic_relink(engine, c)
    by = {p.customer_id: p for p in plan.proposals}
    with engine.begin() as conn:  # someone links customer 1 by hand meanwhile
        conn.execute(text("UPDATE customers SET economic_customer_number = 1 WHERE id = :id"), {"id": ids["lima"]})
    with pytest.raises(NotAllowed):
        apply_economic_relink(engine, plan, actor=VIEWER)
    payload = apply_economic_relink(engine, plan, actor=ADMIN,
                                    approved={by[ids["delta"]].key, by[ids["hotel"]].key, "c999999"})
    assert {"customer_id": 999999, "message": "approved proposal c999999 is not in the plan (any more); nothing "
            "written"} in payload["errors"]  # reported like every job does, the rest still written
    after = links(engine)
    assert after[ids["delta"]] == 4 and after[ids["hotel"]] == by[ids["hotel"]].economic_number
    assert after[ids["alfa"]] is None and after[ids["lima"]] == 1  # skipped: 1 is held by lima now
    assert any(e["customer_id"] == ids["alfa"] and "already linked" in e["message"] for e in payload["errors"])
    assert (payload["linked"], payload["changed"]) == (4, 2)
    undo_run(engine, payload["run_id"], user=ADMIN.email)
    assert links(engine)[ids["delta"]] == 11 and links(engine)[ids["hotel"]] is None


def test_import_customers_without_hub_customer(engine, sim):
    ids = rules_setup(engine, sim)
    with client_for(sim) as c:
        plan = plan_economic_relink(engine, c)
    preview = preview_import(plan)
    assert [r["economic_customer_number"] for r in preview] == [7]  # the rest are linked or candidates
    assert preview[0]["cvr_number"] == make_cvr(107)
    sim.customers.append(make_customer(12, "Mike Maling ApS", cvr=make_cvr(112), city="Odense"))
    sim.customers.append(make_customer(13, "November Net ApS", cvr=A))  # Alfa's CVR: a Hub customer has it
    with client_for(sim) as c:
        plan = plan_economic_relink(engine, c)
    assert {r["economic_customer_number"] for r in preview_import(plan)} == {7, 12}
    seed_hub(engine, [{"name": "Kilo Kaffe", "cvr_number": make_cvr(107)}])  # 7's CVR is held by now
    payload = import_unlinked_customers(engine, plan, actor=ADMIN, numbers=[7, 12])
    assert (payload["created"], payload["skipped"]) == (1, 1)
    assert payload["errors"] == [{"row": 7, "message": f"skipped: a Hub customer already has CVR {make_cvr(107)}"}]
    run = list_runs(engine)[0]  # through the job runner: a closed run with its counts and progress
    assert (run["kind"], run["status"], run["stats"]) == ("economic-import-customers", "succeeded",
                                                          {"created": 1, "skipped": 1})
    assert (run["progress_done"], run["progress_total"]) == (2, 2)
    assert 12 in links(engine).values() and len(links(engine)) == len(ids) + 2
    undo_run(engine, payload["run_id"], user=ADMIN.email)
    assert 12 not in links(engine).values()


# --- the service: paging, retries, refusals -------------------------------------------------------------

def test_429_and_500_during_paging_are_survived_with_retry_after(engine, sim):
    sim.customers = [make_customer(i, f"Kunde {i} ApS", cvr=make_cvr(i)) for i in range(1, 2501)]
    seed_hub(engine, [{"name": "Kunde 5 ApS", "cvr_number": make_cvr(5)}])
    sim.inject(429, retry_after=1, when=lambda r: r.query.get("skippages") == "1")
    sim.inject(500, when=lambda r: r.query.get("skippages") == "2")
    started = time.monotonic()
    payload = run_job(engine, sim, apply=True)
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert sim.request_count == 3 + 2  # pages needed plus one retry each
    assert payload["economic_customers"] == 2500 and payload["linked"] == 1 and "stopped" not in payload


def test_refused_tokens_stop_with_nothing_written(engine, sim):
    ids = rules_setup(engine, sim)
    before = links(engine)
    with client_for(sim, secret="wrong-secret") as c:
        payload = run_economic_relink(engine, apply=True, actor=ADMIN, client=c)
    assert payload["run_id"] is None and "refused the tokens" in payload["stopped"]
    assert "ECONOMIC_APP_SECRET_TOKEN" in payload["stopped"] and "wrong-secret" not in payload["stopped"]
    assert payload["hub_customers"] == len(ids) and payload["linked"] == 0
    assert links(engine) == before and list_runs(engine) == [] and sim.request_count == 1


def test_failure_mid_paging_says_where(engine, sim):
    sim.customers = [make_customer(i, f"Kunde {i} ApS") for i in range(1, 2501)]
    sim.inject(500, times=10, when=lambda r: r.query.get("skippages") == "2")
    payload = run_job(engine, sim, apply=True)
    assert "page 3" in payload["stopped"] and "2000 read" in payload["stopped"]
    assert payload["economic_customers"] == 2000 and list_runs(engine) == []


def test_missing_tokens_and_viewer_refused_before_any_request(engine, sim, monkeypatch):
    monkeypatch.setenv("ECONOMIC_API_URL", sim.url)
    monkeypatch.setenv("ECONOMIC_APP_SECRET_TOKEN", sim.app_secret_token)
    with pytest.raises(ConfigError):
        run_economic_relink(engine, apply=False, actor=ADMIN)
    monkeypatch.setenv("ECONOMIC_AGREEMENT_GRANT_TOKEN", sim.agreement_grant_token)
    with pytest.raises(NotAllowed):
        run_economic_relink(engine, apply=True, actor=VIEWER)
    assert sim.request_count == 0
    assert run_economic_relink(engine, apply=False, actor=VIEWER)["dry_run"] is True
