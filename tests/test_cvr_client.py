"""CvrClient against the cvrapi.dk simulator over real HTTP, plus the database cache."""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from sqlalchemy import text

from lib.config import Settings
from lib.cvr import InvalidCVR, make_cvr
from lib.cvr_cache import CvrCache, query_key
from lib.cvr_client import CvrClient, check_user_agent
from lib.errors import ConfigError, ServiceError, ServiceQuotaError, ServiceUnavailable
from lib.http_session import make_session
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator

UA = SANDBOX_USER_AGENT


@pytest.fixture
def sim():
    with CvrApiSimulator() as s:
        yield s


@pytest.fixture
def client(sim):
    c = CvrClient(sim.url, UA, session=make_session(backoff=0))  # keep retry tests fast
    yield c
    c.close()


def test_lookup_parses_v6_object(sim, client):
    """A lookup returns the typed record, with cvrapi's "dd/mm - yyyy" dates and Danish letters."""
    cvr = make_cvr(1)
    sim.add_company(cvr, "Blåbærgården Ærø ApS", address="Søndergade 12", zipcode="5970", city="Ærøskøbing",
                    startdate="29/12 - 1997", owners=["Jens Hansen"], email="info@blaabaer.dk")
    company = client.lookup(f"DK {cvr[:4]} {cvr[4:]}")
    assert company is not None
    assert company.cvr == cvr and company.name == "Blåbærgården Ærø ApS"
    assert company.city == "Ærøskøbing" and company.zipcode == "5970"
    assert company.start_date == date(1997, 12, 29) and company.end_date is None and company.active
    assert company.owners == ("Jens Hansen",) and company.company_desc == "Anpartsselskab"
    assert sim.requests[0].query == {"vat": cvr, "country": "dk", "version": "6", "format": "json"}
    assert sim.requests[0].header("User-Agent") == UA


def test_ceased_company_is_not_active(sim, client):
    cvr = make_cvr(2)
    sim.add_company(cvr, "Fiskerhuset Skagen I/S", enddate="31/12 - 2023")
    company = client.lookup(cvr)
    assert company.end_date == date(2023, 12, 31) and not company.active


def test_zipcode_as_int_reads_as_text(sim, client):
    sim.zipcode_as_int = True
    sim.add_company(make_cvr(3), "Hansen Elektro ApS", zipcode="6800")
    assert client.lookup(make_cvr(3)).zipcode == "6800"


def test_search_name_with_danish_letters(sim, client):
    """The name is sent as UTF-8 and the simulator's \\u00f8 escapes decode."""
    sim.add_company(make_cvr(4), "Økologisk Rådgivning ApS")
    found = client.search_name("  økologisk   rådgivning ")
    assert [c.name for c in found] == ["Økologisk Rådgivning ApS"]
    assert sim.requests[0].query["name"] == "økologisk rådgivning"


def test_hits_list_variant(sim, client):
    """[U] variant: a search answered with {"hits": [...]} gives every company."""
    sim.hits_mode = True
    sim.add_company(make_cvr(5), "Møller Byg ApS")
    sim.add_company(make_cvr(6), "Møller Byggeservice ApS")
    assert {c.name for c in client.search_name("Møller Byg")} == {"Møller Byg ApS", "Møller Byggeservice ApS"}
    assert client.search_name("Ingen Sådan") == []


@pytest.mark.parametrize("mode", ["200", "404", "404-empty"])
def test_not_found_variants_are_no_match(sim, client, mode):
    sim.not_found_mode = mode
    assert client.lookup(make_cvr(7)) is None
    assert client.search_name("Findes Ikke ApS") == []


def test_invalid_cvr_is_refused_before_any_call(sim, client):
    with pytest.raises(InvalidCVR):
        client.lookup("13585627")
    assert sim.request_count == 0


@pytest.mark.parametrize("error_status", [200, 403, 429])
def test_quota_exceeded_mid_run_stops(sim, client, error_status):
    """After the free quota the next call raises ServiceQuotaError, whatever HTTP status carries it."""
    sim.quota = 2
    sim.error_status = error_status
    sim.error_message = True
    sim.add_company(make_cvr(8), "A ApS")
    assert client.lookup(make_cvr(8)) is not None
    assert client.lookup(make_cvr(9)) is None
    with pytest.raises(ServiceQuotaError, match="QUOTA_EXCEEDED"):
        client.lookup(make_cvr(10))


def test_paid_token_skips_quota_and_never_leaks(sim):
    sim.quota = 0
    sim.tokens.add("s3cret-token")
    with CvrClient(sim.url, UA, token="s3cret-token") as c:
        assert c.lookup(make_cvr(11)) is None
    sim.tokens.clear()
    with CvrClient(sim.url, UA, token="s3cret-token") as c, pytest.raises(ServiceQuotaError) as err:
        c.lookup(make_cvr(11))
    assert "s3cret-token" not in str(err.value)


def test_banned_stops(sim, client):
    sim.banned = True
    with pytest.raises(ServiceQuotaError, match="BANNED"):
        client.search_name("Noget")


def test_invalid_ua_from_service_is_config_error(sim):
    """The service's own UA rule (a UA the client accepted but the server does not) → ConfigError."""
    with CvrClient(sim.url, "Acme - Hub - Jens") as c:
        c.session.headers["User-Agent"] = "just-a-name"
        with pytest.raises(ConfigError, match="INVALID_UA"):
            c.lookup(make_cvr(12))


@pytest.mark.parametrize("ua", [None, "", "   ", "python-requests/2.32", "mit projekt", "BMC Hub"])
def test_missing_or_generic_user_agent_is_config_error_before_any_call(sim, ua):
    with pytest.raises(ConfigError, match="CVR_USER_AGENT"):
        CvrClient(sim.url, ua)
    assert sim.request_count == 0


def test_check_user_agent_accepts_documented_format():
    assert check_user_agent("Acme IT ApS - Kundedashboard - Jens Hansen jens@acme.dk")


def test_429_then_success_honours_retry_after(sim, client):
    sim.add_company(make_cvr(13), "Kærgård Bryggeri ApS")
    sim.inject(429, times=1, retry_after=1)
    started = time.monotonic()
    assert client.lookup(make_cvr(13)).name == "Kærgård Bryggeri ApS"
    assert time.monotonic() - started >= 0.9
    assert sim.request_count == 2


def test_500_once_is_retried(sim, client):
    sim.add_company(make_cvr(14), "Sønderjysk Revision A/S")
    sim.inject(500)
    assert client.lookup(make_cvr(14)) is not None
    assert sim.request_count == 2


def test_persistent_500_is_service_unavailable(sim, client):
    sim.inject(500, times=10)
    with pytest.raises(ServiceUnavailable):
        client.lookup(make_cvr(15))
    assert sim.request_count == 4  # first try + 3 retries


def test_long_retry_after_gives_up_without_sleeping(sim, client):
    sim.inject(429, times=10, retry_after=3600)
    started = time.monotonic()
    with pytest.raises(ServiceQuotaError):
        client.lookup(make_cvr(16))
    assert time.monotonic() - started < 5


def test_unreachable_service_is_service_unavailable():
    with CvrApiSimulator() as s:
        url = s.url
    c = CvrClient(url, UA, session=make_session(backoff=0))
    with pytest.raises(ServiceUnavailable, match="cannot connect"):
        c.lookup(make_cvr(17))


def test_unexpected_answer_is_service_error(sim, client):
    sim.inject(418)
    with pytest.raises(ServiceError):
        client.lookup(make_cvr(18))


def test_latency_beyond_timeout_is_unavailable(sim):
    sim.latency = 1.0
    c = CvrClient(sim.url, UA, timeout=0.2)
    c.session.adapters["http://"].max_retries = 0
    with pytest.raises(ServiceUnavailable, match="timeout"):
        c.lookup(make_cvr(19))


def test_keep_alive_one_connection(sim, client):
    """Several calls reuse the session's pooled connection."""
    for seed in range(20, 25):
        client.lookup(make_cvr(seed))
    pool = next(iter(client.session.adapters["http://"].poolmanager.pools._container.values()))
    assert pool.num_connections == 1


# cache


def test_cache_never_asks_twice(sim, engine):
    """The same question within the cache age costs one request, found or not found, across clients."""
    sim.add_company(make_cvr(30), "Nørrebro Cykler ApS")
    cache = CvrCache(engine, max_age_days=30)
    with CvrClient(sim.url, UA, cache=cache) as c:
        assert c.lookup(make_cvr(30)).name == "Nørrebro Cykler ApS"
        assert c.lookup(make_cvr(31)) is None
        assert c.search_name("Nørrebro Cykler ApS")
    with CvrClient(sim.url, UA, cache=cache) as c2:
        assert c2.lookup(make_cvr(30)).name == "Nørrebro Cykler ApS"
        assert c2.lookup(make_cvr(31)) is None
        assert c2.search_name("NØRREBRO  cykler aps")[0].cvr == make_cvr(30)
        assert c2.requests_made == 0
    assert sim.request_count == 3


def test_cache_expires_and_errors_are_not_cached(sim, engine):
    sim.add_company(make_cvr(32), "Græsrødder Landskab ApS")
    cache = CvrCache(engine, max_age_days=30)
    sim.banned = True
    with CvrClient(sim.url, UA, cache=cache) as c:
        with pytest.raises(ServiceQuotaError):
            c.lookup(make_cvr(32))
        sim.banned = False
        assert c.lookup(make_cvr(32)) is not None
        with engine.begin() as conn:
            conn.execute(text("UPDATE cvr_cache SET fetched_at = :t"),
                         {"t": (date.today() - timedelta(days=40)).isoformat() + " 00:00:00"})
        assert c.lookup(make_cvr(32)) is not None
    assert sim.counts["vat"] == 3
    assert cache.get(query_key("vat", make_cvr(32))) is not None


def test_from_settings_uses_cache_days(sim, engine):
    settings = Settings(cvr_api_url=sim.url, cvr_user_agent=UA, cvr_cache_days=7)
    with CvrClient.from_settings(settings, engine) as c:
        assert c.cache.max_age == timedelta(days=7)
        assert c.base_url == sim.url
