"""Outside services as they really behave (issue #18): rate limits, deleted records, hidden rows, slow pages.

Each behaviour is switched on in the simulators and driven through the real clients and jobs over HTTP.
Rate-limit waits run on a fake clock shared by the simulator's window and the client's session (the
clock is scaled, not the limit): a vTiger Cloud minute is 60 fake seconds that pass at once, so the test runs
in seconds and the seconds it waited are the real-time figure docs/INTEGRATIONS.md quotes.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from lib.audit import insert_rows
from lib.crm_sync import apply_crm_write_back, plan_crm_sync, plan_crm_write_back, run_crm_sync
from lib.cvr import make_cvr
from lib.economic_client import EconomicClient
from lib.economic_relink import run_economic_relink
from lib.errors import ServiceQuotaError, ServiceUnavailable
from lib.http_session import ServiceSession, make_session
from lib.roles import Actor
from lib.runs import get_run
from lib.sandbox import EconomicSimulator, VtigerSimulator, make_account, make_customer
from lib.vtiger_client import VtigerClient

ADMIN = Actor("anna@bmc.dk", "admin")


class FakeTime:
    """A clock that moves only when someone sleeps: shared by a simulator and a session."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(params=["vtiger", "simply"])
def crm(request):
    with VtigerSimulator(mode=request.param) as s:
        yield s


@pytest.fixture
def vt():
    with VtigerSimulator() as s:
        yield s


def source_of(sim: VtigerSimulator) -> str:
    return "simplycrm" if sim.mode == "simply" else "vtiger"


def client_for(sim: VtigerSimulator, fake: FakeTime | None = None, **session_kw) -> VtigerClient:
    if fake is not None:
        sim.clock = fake.clock
        session_kw.update(sleep=fake.sleep, clock=fake.clock, limit_backoff=1.0)
    session = make_session(backoff=0, service="vTiger", **session_kw)
    return VtigerClient(sim.url, sim.username, sim.access_key, name=source_of(sim),
                        supports_revise=sim.mode != "simply", session=session)


def add_customers(engine, rows: list[dict]) -> list[int]:
    cols = ("name", "cvr_number", "vtiger_account_id", "simplycrm_account_id", "zip", "city")
    with engine.begin() as conn:
        return insert_rows(conn, "customers", [{c: r.get(c) for c in cols} for r in rows], run_id=None, user="seed")


def stored_link(engine, cid: int, col: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT {col} FROM customers WHERE id = :id"), {"id": cid}).scalar()


def cloud_edition(sim: VtigerSimulator, per_minute: int, headers: bool = True) -> None:
    sim.flood_limit, sim.flood_window, sim.flood_headers = per_minute, 60.0, headers


# --- vTiger Cloud flood control -------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [True, False], ids=["flood-headers", "bare-429"])
def test_crm_sync_of_5000_accounts_at_30_per_minute_completes(engine, vt, headers):
    """55 requests against 30 a minute: with X-FloodControl-* the client pauses until the window resets before
    it is refused (exactly one minute, no 429 at all); with a bare 429 it backs off with jitter (1, 2, 4 … s)
    until the window has reset. Either way every account is read and the run succeeds."""
    vt.accounts = [make_account(i, f"Kunde {i} ApS", cvr=make_cvr(i)) for i in range(1, 5001)]
    linked = add_customers(engine, [{"name": "Kunde 7 ApS", "vtiger_account_id": "11x7"}])[0]
    cloud_edition(vt, 30, headers)
    fake = FakeTime()
    progress: list[str] = []
    with client_for(vt, fake) as client:
        payload = run_crm_sync(engine, source="vtiger", apply=True, actor=ADMIN, client=client,
                               on_progress=lambda done, total, message: progress.append(message))
        waited = client.session.waited
    assert "stopped" not in payload and payload["accounts"] == 5000 and payload["linked"] == 0
    assert stored_link(engine, linked, "vtiger_account_id") == "11x7"
    assert vt.request_count - vt.flood_refused == 55  # challenge, login, describe, count, 51 pages
    assert "waiting for vTiger's rate limit, 60 s" in progress or not headers
    assert any(m.startswith("waiting for vTiger's rate limit, ") for m in progress)
    if headers:
        assert waited == 60.0 and vt.flood_refused == 0  # paced before the limit, never refused
    else:
        assert 60.0 <= waited <= 130.0 and vt.flood_refused > 0
    assert get_run(engine, payload["run_id"])["status"] == "succeeded"


@pytest.mark.parametrize("per_minute, minutes", [(30, 1), (60, 0), (90, 0)])
def test_sync_time_per_vtiger_cloud_edition(vt, per_minute, minutes):
    """The table in docs/INTEGRATIONS.md: 5,000 accounts wait one minute on One Growth, none above."""
    vt.accounts = [{"id": f"11x{i}", "accountname": f"Kunde {i} ApS"} for i in range(1, 5001)]  # lean rows: fast
    cloud_edition(vt, per_minute)
    with client_for(vt, FakeTime()) as client:
        assert len(list(client.iter_accounts())) == 5000
        assert client.session.waited == 60.0 * minutes and vt.flood_refused == 0


def test_a_post_refused_with_429_is_retried_and_a_500_is_not(vt):
    vt.accounts = [make_account(1, "A", cvr="")]
    vt.inject(429, when=lambda r: r.label == "login")  # 429: not processed, safe to send again
    with client_for(vt) as client:
        client.login()
        assert vt.counts["login"] == 2
        vt.inject(500, times=5, when=lambda r: r.label == "revise")  # 500: may have been processed
        with pytest.raises(ServiceUnavailable, match="HTTP 500"):
            client.update_fields("11x1", {"cf_853": make_cvr(1)})
    assert vt.counts["revise"] == 1


def test_the_wait_budget_ends_a_blocked_job_with_a_clear_message(vt):
    """A limit that never reopens within the budget stops the job; it does not spin or sleep past the budget."""
    vt.accounts = [make_account(1, "A")]
    cloud_edition(vt, 2)
    vt.flood_window = 3600  # an hour-long block, e.g. the daily limit
    waits: list[tuple[float, str]] = []
    with client_for(vt, wait_budget=0.3) as client:
        client.session.on_wait = lambda seconds, service: waits.append((seconds, service))
        started = time.monotonic()
        with pytest.raises(ServiceQuotaError, match=r"429.*HTTP_WAIT_BUDGET_SECONDS=0\.3"):
            list(client.iter_accounts())
        assert time.monotonic() - started < 3 and client.session.waited <= 0.3
    assert vt.counts["login"] == 1 and not waits  # an hour does not fit in 0.3 s: no pointless sleeping


def test_a_used_up_daily_limit_stops_at_once_without_waiting(vt):
    """vTiger Cloud's daily limit (X-RateLimit-Remaining: 0, no reset time): no wait inside a job would help."""
    vt.accounts = [make_account(1, "A")]
    vt.daily_limit = 3  # getchallenge, login, describe
    with client_for(vt) as client, pytest.raises(ServiceQuotaError, match="daily request limit is used up"):
        list(client.iter_accounts())
    assert client.session.waited == 0 and vt.flood_refused == 1


def test_waits_are_reported_with_seconds_and_service(vt, caplog):
    """To the job's progress through on_wait, and as a log line (the CLI's stderr)."""
    caplog.set_level("INFO", logger="hub.http")
    vt.accounts = [make_account(1, "A")]
    vt.inject(429, retry_after=1, when=lambda r: r.label == "getchallenge")
    waits: list[tuple[float, str]] = []
    with client_for(vt) as client:
        client.session.on_wait = lambda seconds, service: waits.append((seconds, service))
        client.login()
    assert waits == [(1.0, "vTiger")]
    [record] = [r for r in caplog.records if r.name == "hub.http"]
    assert record.getMessage() == "waiting for a rate limit" and (record.service, record.seconds) == ("vTiger", 1.0)


# --- deleted records ------------------------------------------------------------------------------------------

def test_write_back_with_one_deleted_account_writes_the_others_and_reports_it(engine, crm, monkeypatch):
    """Real vTiger answers ACCESS_DENIED for the account deleted between preview and apply: that one account is
    an error row, the other two are written, and the run finishes."""
    monkeypatch.setenv("CRM_WRITE_BACK", "true")
    col = f"{source_of(crm)}_account_id"
    crm.accounts = [make_account(i, f"Konto {i} ApS", cvr="") for i in (1, 2, 3)]
    add_customers(engine, [{"name": f"Konto {i} ApS", "cvr_number": make_cvr(i), col: f"11x{i}"} for i in (1, 2, 3)])
    with client_for(crm) as client:
        plan = plan_crm_write_back(engine, client, sync_plan=plan_crm_sync(engine, client))
        assert len(plan.proposals) == 3
        crm.accounts = [a for a in crm.accounts if a["id"] != "11x2"]  # deleted in the CRM meanwhile
        done = apply_crm_write_back(engine, client, plan, actor=ADMIN)
    assert "stopped" not in done and done["written"] == 2
    [error] = [e for e in done["errors"] if e["account_id"] == "11x2"]
    assert "Konto 2 ApS" in error["message"] and "deleted" in error["message"]
    assert [a["cf_853"] for a in crm.accounts] == [make_cvr(1), make_cvr(3)]
    run = get_run(engine, done["run_id"])
    assert run["status"] == "succeeded" and run["stats"]["written"] == 2


# --- rows hidden by permissions -------------------------------------------------------------------------------

def test_a_permission_hidden_page_neither_ends_the_read_nor_makes_ids_stale(engine, crm):
    """Accounts 101-200 are hidden from the API user: their page comes back empty while 150 accounts remain.
    The read goes on, the run says 100 are missing, and the customer linked to hidden 11x150 keeps its link
    although a visible account has the same name."""
    col = f"{source_of(crm)}_account_id"
    crm.accounts = [make_account(i, f"Kunde {i} ApS", cvr="") for i in range(1, 351)]
    crm.accounts.append(make_account(900, "Zeta Rådgivning ApS", cvr=""))
    crm.hidden_ids = {f"11x{i}" for i in range(101, 201)}
    zeta = add_customers(engine, [{"name": "Zeta Rådgivning ApS", col: "11x150"}])[0]
    with client_for(crm) as client:
        payload = run_crm_sync(engine, source=source_of(crm), apply=True, actor=ADMIN, client=client)
    assert "stopped" not in payload and payload["accounts"] == 251  # 1-100, 201-350 and 11x900
    assert any("counted 351" in e["message"] and "100 missing" in e["message"] for e in payload["errors"])
    assert stored_link(engine, zeta, col) == "11x150"  # not treated as stale, not relinked to 11x900
    assert get_run(engine, payload["run_id"])["stats"]["missing"] == 100


def test_a_complete_read_still_frees_a_stale_link(engine, vt):
    """The same customer, when nothing is hidden and 11x150 is really gone: the stale link is replaced."""
    vt.accounts = [make_account(900, "Zeta Rådgivning ApS", cvr="")]
    zeta = add_customers(engine, [{"name": "Zeta Rådgivning ApS", "vtiger_account_id": "11x150"}])[0]
    with client_for(vt) as client:
        payload = run_crm_sync(engine, source="vtiger", apply=True, actor=ADMIN, client=client)
    assert payload["linked"] == 1 and stored_link(engine, zeta, "vtiger_account_id") == "11x900"


# --- e-conomic ------------------------------------------------------------------------------------------------

def _economic(sim: EconomicSimulator, **kw) -> EconomicClient:
    return EconomicClient(sim.url, sim.app_secret_token, sim.agreement_grant_token, session=make_session(**kw))


def test_economic_token_bucket_429_without_retry_after_is_waited_out():
    with EconomicSimulator() as sim:
        sim.customers = [make_customer(i, f"Kunde {i}") for i in range(1, 1001)]
        sim.bucket_size, sim.bucket_refill_per_second = 2, 20.0
        with _economic(sim, backoff=0, limit_backoff=0.05, service="e-conomic") as client:
            client.page_size = 100
            assert len(client.list_customers()) == 1000
            assert client.session.waited > 0
        assert sim.rate_limited > 0


def test_economic_relink_shows_the_wait_in_its_progress(engine):
    with EconomicSimulator() as sim:
        sim.customers = [make_customer(i, f"Kunde {i}") for i in range(1, 301)]
        sim.bucket_size, sim.bucket_refill_per_second = 1, 5.0
        progress: list[str] = []
        with _economic(sim, backoff=0, limit_backoff=0.2, service="e-conomic") as client:
            client.page_size = 100
            payload = run_economic_relink(engine, apply=False, actor=ADMIN, client=client,
                                          on_progress=lambda done, total, message: progress.append(message))
        assert "stopped" not in payload and payload["economic_customers"] == 300 and sim.rate_limited > 0
        assert any(m.startswith("waiting for e-conomic's rate limit, ") for m in progress)


def test_economic_page_that_times_out_is_asked_again_smaller():
    """A 1000-customer page does not answer within the timeout: the client halves the page (not the same request
    three more times) and keeps the smaller size for the rest of the read."""
    with EconomicSimulator() as sim:
        sim.customers = [make_customer(i, f"Kunde {i}") for i in range(1, 1201)]
        sim.slow_above_page_size, sim.slow_seconds = 500, 3.0
        with _economic(sim, timeout=1.0, read_retries=0) as client:
            numbers = [c.customer_number for c in client.iter_customers()]
            assert client.page_size == 500
        assert numbers == list(range(1, 1201))
        sizes = [(r.query.get("pagesize"), r.query.get("skippages")) for r in sim.requests]
        assert sizes == [("1000", "0"), ("500", "0"), ("500", "1"), ("500", "2")]


def test_economic_timeout_even_for_the_smallest_page_names_the_setting():
    with EconomicSimulator() as sim:
        sim.customers = [make_customer(i, f"Kunde {i}") for i in range(1, 201)]
        sim.slow_above_page_size, sim.slow_seconds = 0, 2.0
        with _economic(sim, timeout=0.3, read_retries=0) as client, \
                pytest.raises(ServiceUnavailable, match="125 customers per page.*HTTP_TIMEOUT_SECONDS"):
            client.list_customers()
        assert [r.query.get("pagesize") for r in sim.requests] == ["1000", "500", "250", "125"]


# --- the window headers, with a fake clock -----------------------------------------------------------------------

def test_window_headers_pace_the_next_call_with_seconds_or_a_unix_time(vt):
    """`X-FloodControl-Reset: 40` (seconds) and `X-RateLimit-Reset: <unix time>` both mean "wait until then";
    the wait happens before the next request, reported in steps of at most 5 s."""
    fake = FakeTime()
    session = ServiceSession(5.0, service="vTiger", sleep=fake.sleep, clock=lambda: fake.now,
                             wall_clock=lambda: 1_800_000_000.0)
    reports: list[float] = []
    session.on_wait = lambda seconds, service: reports.append(round(seconds, 3))
    vt.flood_limit, vt.flood_window = 1, 60
    with session:
        first = session.get(vt.endpoint, params={"operation": "getchallenge", "username": vt.username})
        reset = float(first.headers["X-FloodControl-Reset"])
        assert first.headers["X-FloodControl-Remaining"] == "0" and not fake.slept  # nothing waits until needed
        vt.flood_limit = 100  # so the simulator, on real time, takes the next call once we have waited
        assert session.get(vt.endpoint, params={"operation": "listtypes"}).status_code == 200
    assert sum(fake.slept) == pytest.approx(reset) and max(fake.slept) <= 5 and reports[0] == reset
    assert vt.flood_refused == 0  # paced, never refused
    response = requests_response({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(1_800_000_040)})
    assert session._reset_seconds(response) == 40.0
    assert session._reset_seconds(requests_response({"X-FloodControl-Reset": "40"})) == 40.0


def requests_response(headers: dict[str, str]):
    import requests

    response = requests.Response()
    response.headers.update(headers)
    response.status_code = 200
    return response
