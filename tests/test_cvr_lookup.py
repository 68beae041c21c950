"""The CVR lookup job against the cvrapi.dk simulator over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.config import Settings
from lib.customers import get_customer, update_customer
from lib.cvr import make_cvr
from lib.cvr_lookup import (
    AMBIGUOUS,
    FOUND,
    NOT_FOUND,
    apply_cvr_lookup,
    config_problem,
    count_missing_cvr,
    lookup_one,
    make_client,
    plan_cvr_lookup,
    quota_status,
    run_cvr_lookup,
)
from lib.errors import ConfigError, InputError, NotAllowed
from lib.roles import Actor
from lib.runs import get_run, run_changes, undo_run
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator, dataset, seed_demo

ADMIN = Actor("anna@bmc.dk", "admin")
OPERATOR = Actor("ole@bmc.dk", "operator")
VIEWER = Actor("vera@bmc.dk", "viewer")


@pytest.fixture
def sim():
    with CvrApiSimulator() as s:
        yield s


@pytest.fixture
def cvr_env(sim, monkeypatch):
    monkeypatch.setenv("CVR_API_URL", sim.url)
    monkeypatch.setenv("CVR_USER_AGENT", SANDBOX_USER_AGENT)
    return sim


def add_customers(engine, rows: list[dict]) -> list[int]:
    full = [{"cvr_number": None, "zip": None, "city": None, **r} for r in rows]
    with engine.begin() as conn:
        return insert_rows(conn, "customers", full, run_id=None, user="seed")


def cvr_of(engine, customer_id: int) -> str | None:
    return get_customer(engine, customer_id)["cvr_number"]


def by_name(payload: dict) -> dict[str, dict]:
    return {p["customer_name"]: p for p in payload["proposals"]}


@pytest.fixture
def demo(engine, cvr_env):
    """The shared demo data set: the register in the simulator, the Hub's customers in the database."""
    seed_demo(cvr_env)
    ids = add_customers(engine, dataset.hub_customers())
    names = [r["name"] for r in dataset.hub_customers()]
    return dict(zip(names, ids, strict=True))


def test_right_companies_found_and_applied(engine, demo, cvr_env):
    """The demo set: seven exact companies are written, the ceased one and the decoy are not, existing CVRs stay."""
    before = {name: cvr_of(engine, cid) for name, cid in demo.items()}
    payload = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    assert payload["dry_run"] is False and payload["run_id"] is not None
    assert (payload["candidates"], payload["found"], payload["updated"], payload["ambiguous"],
            payload["not_found"], payload["quota_exhausted"]) == (10, 7, 7, 1, 2, False)
    for key in ("oekologisk", "moeller", "hansen", "kaergaard", "aalborg_oel", "vestjysk", "soestrene"):
        company = dataset.by_key(key)
        assert cvr_of(engine, demo[company.hub_name or company.name]) == company.cvr, key
    assert cvr_of(engine, demo["Fiskerhuset Skagen I/S"]) is None  # ceased: ambiguous, never applied
    proposals = by_name(payload)
    assert proposals["Fiskerhuset Skagen I/S"]["outcome"] == AMBIGUOUS
    assert proposals["Fiskerhuset Skagen I/S"]["ceased"] == "2023-12-31"
    assert proposals["Fiskerhuset Skagen I/S"]["approvable"] is False
    # "Møller Byg": the service answers the decoy Møller Byggeservice ApS; it is not written
    assert proposals["Møller Byg"]["company_name"] == "Møller Byggeservice ApS"
    assert proposals["Møller Byg"]["outcome"] == NOT_FOUND and cvr_of(engine, demo["Møller Byg"]) is None
    # customers that had a CVR are untouched and were never asked about
    for name, cvr in before.items():
        if cvr is not None:
            assert cvr_of(engine, demo[name]) == cvr
    asked = {r.query["name"] for r in cvr_env.requests}
    assert len(cvr_env.requests) == 10 and "Blåbærgården Ærø ApS" not in asked
    run = get_run(engine, payload["run_id"])
    assert run["kind"] == "cvr-lookup" and run["status"] == "succeeded" and run["stats"]["updated"] == 7
    assert {c["field"] for c in run_changes(engine, payload["run_id"])} == {"cvr_number"}


def test_dry_run_writes_nothing_and_counts_what_apply_would_do(engine, demo, cvr_env):
    payload = run_cvr_lookup(engine, apply=False, actor=VIEWER)
    assert payload["run_id"] is None and payload["dry_run"] is True
    assert payload["found"] == 7 and payload["updated"] == 7
    assert count_missing_cvr(engine) == 10
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 0
    # the apply that follows asks nothing again: every answer is cached
    applied = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    assert applied["updated"] == 7 and applied["requests"] == 0 and cvr_env.request_count == 10


def test_similar_but_different_company_is_not_applied(engine, cvr_env):
    """The service answers the most similar company; an extra word or one changed word keeps it out."""
    cvr_env.add_company(make_cvr(501), "Hansen VVS Service ApS", zipcode="7100", city="Vejle")
    cvr_env.add_company(make_cvr(502), "Østergaard & Sønner ApS", zipcode="8000", city="Aarhus C")
    cvr_env.add_company(make_cvr(503), "Lind & Holst ApS", zipcode="8000", city="Aarhus C")
    ids = add_customers(engine, [
        {"name": "Hansen VVS", "zip": "7100", "city": "Vejle"},
        {"name": "Østergaard & Søn", "zip": "8000"},
        {"name": "Lind & Holst", "zip": "5000", "city": "Odense C"},  # same name, another town
    ])
    payload = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    answered = {p["customer_id"]: p for p in payload["proposals"]}
    assert answered[ids[0]]["company_name"] == "Hansen VVS Service ApS"
    assert answered[ids[1]]["company_name"] == "Østergaard & Sønner ApS"
    assert [answered[i]["outcome"] for i in ids] == [NOT_FOUND, AMBIGUOUS, AMBIGUOUS]
    assert "a different name" in answered[ids[0]]["reason"]
    assert "appear in only one of the names" in answered[ids[1]]["reason"]
    assert answered[ids[2]]["score"] == 100.0 and "zip 5000 differs" in answered[ids[2]]["reason"]
    assert payload["updated"] == 0 and all(cvr_of(engine, i) is None for i in ids)


def test_cvr_held_by_another_customer_is_never_given_twice(engine, cvr_env):
    """A CVR another customer holds, or one found for two candidates, is reported, not written."""
    cvr_env.add_company(make_cvr(601), "Blåbærgården Ærø ApS", zipcode="5970", city="Ærøskøbing")
    cvr_env.add_company(make_cvr(602), "Kærgård Bryggeri ApS", zipcode="7500", city="Holstebro")
    holder, dup, twin_a, twin_b = add_customers(engine, [
        {"name": "Blåbærgården", "cvr_number": make_cvr(601)},
        {"name": "Blåbærgården Ærø ApS", "zip": "5970"},
        {"name": "Kærgård Bryggeri ApS", "zip": "7500"},
        {"name": "Kærgård Bryggeri", "city": "Holstebro"},
    ])
    payload = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    answered = {p["customer_id"]: p for p in payload["proposals"]}
    assert answered[dup]["outcome"] == AMBIGUOUS and answered[dup]["approvable"] is False
    assert f"belongs to customer {holder}" in answered[dup]["reason"]
    assert answered[twin_a]["outcome"] == answered[twin_b]["outcome"] == AMBIGUOUS
    assert payload["updated"] == 0 and payload["found"] == 0
    assert [cvr_of(engine, i) for i in (holder, dup, twin_a, twin_b)] == [make_cvr(601), None, None, None]
    # approving the CVR another customer holds is refused; approving both twins writes only the first
    with make_client(engine) as client:
        plan = plan_cvr_lookup(engine, client)
    keys = {p.customer_id: p.key for p in plan.proposals}
    result = apply_cvr_lookup(engine, plan, actor=OPERATOR, approved={keys[dup], keys[twin_a], keys[twin_b]})
    assert result["updated"] == 1 and cvr_of(engine, twin_a) == make_cvr(602) and cvr_of(engine, twin_b) is None
    messages = {e["customer_id"]: e["message"] for e in result["errors"]}
    assert "cannot be accepted" in messages[dup] and f"belongs to customer {twin_a} now" in messages[twin_b]


def test_approved_ambiguous_is_written_and_unapproved_is_not(engine, cvr_env):
    cvr_env.add_company(make_cvr(701), "Holm Consult ApS", zipcode="8000", city="Aarhus C")
    cvr_env.add_company(make_cvr(702), "Bech Consult ApS", zipcode="8000", city="Aarhus C")
    holm, bech = add_customers(engine, [{"name": "Holm Consult", "zip": "8600"}, {"name": "Bech Consult", "zip": "8600"}])
    with make_client(engine) as client:
        plan = plan_cvr_lookup(engine, client)
    assert {p.outcome for p in plan.proposals} == {AMBIGUOUS}  # zip 8600 differs from 8000
    key = next(p.key for p in plan.proposals if p.customer_id == holm)
    result = apply_cvr_lookup(engine, plan, actor=OPERATOR, approved={key})
    assert result["updated"] == 1 and cvr_of(engine, holm) == make_cvr(701) and cvr_of(engine, bech) is None
    assert get_run(engine, result["run_id"])["parameters"]["approved"] == [key]
    # a key the plan does not hold (another company) is refused
    assert apply_cvr_lookup(engine, plan, actor=OPERATOR, approved={f"{bech}:{make_cvr(999)}"})["errors"]


def test_existing_cvr_is_rechecked_when_writing(engine, cvr_env):
    """A CVR set between preview and apply is never overwritten."""
    cvr_env.add_company(make_cvr(801), "Kastrup Auto ApS", zipcode="2770", city="Kastrup")
    (cid,) = add_customers(engine, [{"name": "Kastrup Auto ApS", "zip": "2770"}])
    with make_client(engine) as client:
        plan = plan_cvr_lookup(engine, client)
    assert plan.proposals[0].outcome == FOUND
    update_customer(engine, cid, {"cvr_number": "20756438"}, user="someone")
    result = apply_cvr_lookup(engine, plan, actor=OPERATOR)
    assert result["updated"] == 0 and cvr_of(engine, cid) == "20756438"
    assert "never overwritten" in result["errors"][0]["message"]


def test_quota_stops_keeps_decisions_and_next_run_continues(engine, cvr_env):
    """Quota after 5 calls: 5 decided and written, run stopped; after the reset the rest, no answer asked twice."""
    names = [f"Firma {w} ApS" for w in ("Alfa", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel")]
    for n, name in enumerate(names):
        cvr_env.add_company(make_cvr(900 + n), name, zipcode="8000", city="Aarhus C")
    ids = add_customers(engine, [{"name": name, "zip": "8000"} for name in names])
    cvr_env.quota = 5
    first = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    assert first["quota_exhausted"] is True and "QUOTA_EXCEEDED" in first["stopped"]
    assert (first["candidates"], first["found"], first["updated"], first["not_asked"]) == (8, 5, 5, 3)
    assert [cvr_of(engine, i) for i in ids[:5]] == [make_cvr(900 + n) for n in range(5)]
    assert all(cvr_of(engine, i) is None for i in ids[5:])
    run = get_run(engine, first["run_id"])
    assert run["status"] == "stopped" and "QUOTA_EXCEEDED" in run["error"] and run["stats"]["updated"] == 5
    assert cvr_env.request_count == 6  # five answers and one refusal; the other two were never asked
    assert quota_status(engine).exhausted_today and quota_status(engine).left == 0

    cvr_env.used.clear()  # the next day
    second = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    assert second["quota_exhausted"] is False and "stopped" not in second
    assert (second["candidates"], second["updated"], second["requests"]) == (3, 3, 3)
    assert [cvr_of(engine, i) for i in ids] == [make_cvr(900 + n) for n in range(8)]
    answered = [r.query["name"] for r in cvr_env.requests if r is not cvr_env.requests[5]]
    assert sorted(answered) == sorted(names)  # each name answered exactly once over both runs


def test_quota_on_a_dry_run_keeps_decisions_and_the_cache_serves_them(engine, cvr_env):
    names = ["Aa Byg ApS", "Bb Byg ApS", "Cc Byg ApS"]
    for n, name in enumerate(names):
        cvr_env.add_company(make_cvr(950 + n), name)
    add_customers(engine, [{"name": n} for n in names])
    cvr_env.quota = 2
    first = run_cvr_lookup(engine, apply=False, actor=VIEWER)
    assert (first["found"], first["not_asked"], first["quota_exhausted"]) == (2, 1, True)
    cvr_env.used.clear()
    second = run_cvr_lookup(engine, apply=False, actor=VIEWER)
    assert second["found"] == 3 and second["requests"] == 1


def test_ban_stops_the_run(engine, cvr_env):
    cvr_env.add_company(make_cvr(960), "Bannet ApS")
    add_customers(engine, [{"name": "Bannet ApS"}])
    cvr_env.banned = True
    payload = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    assert payload["quota_exhausted"] is True and "BANNED" in payload["stopped"] and payload["updated"] == 0
    assert get_run(engine, payload["run_id"])["status"] == "stopped"


def test_outage_stops_without_quota_flag_and_makes_one_request(engine, cvr_env):
    """A 503 is not retried (a retry would be a second request for the candidate)."""
    add_customers(engine, [{"name": "Nede ApS"}])
    cvr_env.inject(503, times=5)
    payload = run_cvr_lookup(engine, apply=False, actor=VIEWER)
    assert payload["stopped"] and payload["quota_exhausted"] is False and cvr_env.request_count == 1


def test_at_most_one_request_per_candidate_even_with_duplicate_names(engine, cvr_env):
    cvr_env.add_company(make_cvr(970), "Dobbelt ApS")
    add_customers(engine, [{"name": "Dobbelt ApS"}, {"name": "dobbelt  aps"}, {"name": "Ukendt ApS"}])
    payload = run_cvr_lookup(engine, apply=False, actor=VIEWER)
    assert cvr_env.request_count == 2 and payload["ambiguous"] == 2 and payload["not_found"] == 1


def test_limit_prefers_customers_never_asked(engine, cvr_env):
    ids = add_customers(engine, [{"name": f"Ingen {n} ApS"} for n in range(5)])
    first = run_cvr_lookup(engine, apply=False, actor=VIEWER, limit=2)
    assert first["candidates"] == 2 and [p["customer_id"] for p in first["proposals"]] == ids[:2]
    second = run_cvr_lookup(engine, apply=False, actor=VIEWER, limit=2)
    assert [p["customer_id"] for p in second["proposals"]] == ids[2:4]
    assert cvr_env.request_count == 4
    with pytest.raises(InputError):
        run_cvr_lookup(engine, apply=False, actor=VIEWER, limit=0)


def test_undo_restores(engine, demo):
    payload = run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    assert count_missing_cvr(engine) == 3
    result = undo_run(engine, payload["run_id"], user=OPERATOR.email, role=OPERATOR.role)
    assert result["fields_restored"] == 7 and count_missing_cvr(engine) == 10


def test_viewer_cannot_apply_and_nothing_is_asked(engine, demo, cvr_env):
    with pytest.raises(NotAllowed):
        run_cvr_lookup(engine, apply=True, actor=VIEWER)
    assert cvr_env.request_count == 0


def test_missing_or_generic_user_agent_is_a_configuration_error(engine, monkeypatch, sim):
    add_customers(engine, [{"name": "Noget ApS"}])
    monkeypatch.setenv("CVR_API_URL", sim.url)
    assert config_problem() is not None
    with pytest.raises(ConfigError):
        run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    monkeypatch.setenv("CVR_USER_AGENT", "python-requests/2.32")
    with pytest.raises(ConfigError):
        run_cvr_lookup(engine, apply=False, actor=OPERATOR)
    assert sim.request_count == 0


class StrictUaSimulator(CvrApiSimulator):
    """A cvrapi.dk that also wants an e-mail address in the User-Agent (the [U] rule could be stricter)."""

    def handle(self, request):
        if "@" not in (request.header("User-Agent") or ""):
            return self._error("INVALID_UA")
        return super().handle(request)


def test_invalid_ua_answer_is_a_configuration_error(engine, monkeypatch):
    add_customers(engine, [{"name": "Noget ApS"}])
    with StrictUaSimulator() as strict:
        monkeypatch.setenv("CVR_API_URL", strict.url)
        monkeypatch.setenv("CVR_USER_AGENT", "Acme IT ApS - Kundedashboard - Jens Hansen")
        with pytest.raises(ConfigError, match="INVALID_UA"):
            run_cvr_lookup(engine, apply=True, actor=OPERATOR)
    assert count_missing_cvr(engine) == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM runs")).scalar_one() == "failed"


def test_quota_status_counts_todays_requests(engine, cvr_env):
    add_customers(engine, [{"name": f"Tæller {n} ApS"} for n in range(3)])
    assert quota_status(engine).left == 50
    run_cvr_lookup(engine, apply=False, actor=VIEWER)
    status = quota_status(engine)
    assert (status.used_today, status.left, status.exhausted_today) == (3, 47, False)
    assert quota_status(engine, Settings(cvr_api_token="paid")).left is None


def test_lookup_one_previews_then_applies_from_the_cache(engine, cvr_env):
    cvr_env.add_company(make_cvr(980), "Enkelt Kunde ApS", zipcode="8000", city="Aarhus C")
    cvr_env.add_company(make_cvr(981), "Tvivl Kunde ApS", zipcode="8000", city="Aarhus C")
    one, doubt = add_customers(engine, [{"name": "Enkelt Kunde ApS", "zip": "8000"},
                                        {"name": "Tvivl Kunde", "zip": "9000"}])
    preview = lookup_one(engine, one, actor=OPERATOR, apply=False)
    assert preview["proposal"]["outcome"] == FOUND and cvr_of(engine, one) is None
    applied = lookup_one(engine, one, actor=OPERATOR, apply=True)
    assert applied["updated"] == 1 and cvr_of(engine, one) == make_cvr(980) and cvr_env.request_count == 1
    with pytest.raises(InputError, match="never overwritten"):
        lookup_one(engine, one, actor=OPERATOR, apply=True)
    shown = lookup_one(engine, doubt, actor=OPERATOR, apply=False)["proposal"]
    assert shown["outcome"] == AMBIGUOUS
    assert lookup_one(engine, doubt, actor=OPERATOR, apply=True)["updated"] == 0
    approved = lookup_one(engine, doubt, actor=OPERATOR, apply=True, approved_key=shown["key"])
    assert approved["updated"] == 1 and cvr_of(engine, doubt) == make_cvr(981) and cvr_env.request_count == 2
