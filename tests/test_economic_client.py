"""EconomicClient against the e-conomic simulator over real HTTP."""

from __future__ import annotations

import time

import pytest

from lib.config import Settings
from lib.cvr import make_cvr
from lib.economic_client import EconomicClient
from lib.errors import ConfigError, ServiceAuthError, ServiceError, ServiceQuotaError, ServiceUnavailable
from lib.http_session import make_session
from lib.sandbox import EconomicSimulator, make_customer


@pytest.fixture
def sim():
    with EconomicSimulator() as s:
        yield s


def _client(sim, **kw) -> EconomicClient:
    return EconomicClient(sim.url, sim.app_secret_token, sim.agreement_grant_token, session=make_session(backoff=0),
                          **kw)


@pytest.fixture
def client(sim):
    c = _client(sim)
    yield c
    c.close()


def _many(n: int, start: int = 1) -> list[dict]:
    return [make_customer(i, f"Kunde {i} ApS", cvr=make_cvr(i)) for i in range(start, start + n)]


def test_all_customers_in_pages_of_1000(sim, client):
    """2,500 customers cost exactly three requests (pages needed), each with pagesize 1000."""
    sim.customers = _many(2500)
    customers = client.list_customers()
    assert len(customers) == 2500
    assert sim.counts["/customers"] == 3
    assert [r.query.get("pagesize") for r in sim.requests] == ["1000", "1000", "1000"]
    assert [r.query.get("skippages") for r in sim.requests] == ["0", "1", "2"]
    assert all(r.header("X-AppSecretToken") == sim.app_secret_token for r in sim.requests)
    assert all(r.header("X-AgreementGrantToken") == sim.agreement_grant_token for r in sim.requests)


def test_exact_page_multiple_needs_no_extra_request(sim, client):
    sim.customers = _many(1000)
    assert len(client.list_customers()) == 1000
    assert sim.request_count == 1


def test_empty_agreement(sim, client):
    assert client.list_customers() == []
    assert sim.request_count == 1


def test_parses_fields_and_missing_booleans(sim, client):
    """barred is omitted when false; Danish letters survive; the CVR is normalised from DK/spaced forms."""
    sim.customers = [
        make_customer(1042, "Blåbærgården Ærø ApS", cvr="DK" + make_cvr(1), city="Ærøskøbing", zip="5970",
                      email="bogholderi@blaabaer.dk"),
        make_customer(7, "Hansen Elektro ApS", cvr=" ".join([make_cvr(2)[:4], make_cvr(2)[4:]]), barred=True),
        make_customer(8, "Uden CVR A/S"),
        make_customer(9, "Forkert CVR A/S", cvr="12345678"),
    ]
    by_number = {c.customer_number: c for c in client.iter_customers()}
    first = by_number[1042]
    assert first.name == "Blåbærgården Ærø ApS" and first.city == "Ærøskøbing"
    assert first.corporate_identification_number == "DK" + make_cvr(1) and first.cvr == make_cvr(1)
    assert first.barred is False and "barred" not in first.raw
    assert by_number[7].barred is True and by_number[7].cvr == make_cvr(2)
    assert by_number[8].cvr is None and by_number[8].corporate_identification_number is None
    assert by_number[9].cvr is None and by_number[9].corporate_identification_number == "12345678"


def test_duplicates_across_pages_are_dropped(sim):
    """Offset paging over a changing list can repeat a row on the next page: each number once."""
    rows = _many(5)
    sim.customers = rows[:3] + [rows[2]] + rows[3:]
    with _client(sim, page_size=3) as c:
        numbers = [x.customer_number for x in c.iter_customers()]
    assert numbers == [1, 2, 3, 4, 5]
    assert sim.request_count == 2


def test_429_then_success(sim, client):
    sim.customers = _many(1500)
    sim.inject(429, retry_after=1, when=lambda r: r.query.get("skippages") == "1")
    started = time.monotonic()
    assert len(client.list_customers()) == 1500
    assert time.monotonic() - started >= 0.9
    assert sim.request_count == 3


def test_500_on_one_page_is_retried(sim, client):
    sim.customers = _many(2100)
    sim.inject(500, when=lambda r: r.query.get("skippages") == "2")
    assert len(client.list_customers()) == 2100
    assert [r.query.get("skippages") for r in sim.requests] == ["0", "1", "2", "2"]


def test_persistent_500_reports_the_service_message(sim, client):
    sim.customers = _many(10)
    sim.inject(500, times=10)
    with pytest.raises(ServiceUnavailable, match="HTTP 500.*An error occurred"):
        client.list_customers()


def test_rate_limit_past_the_wait_budget_is_quota_error(sim, client):
    sim.inject(429, times=10, retry_after=3600)  # more than the whole wait budget: not waited at all
    started = time.monotonic()
    with pytest.raises(ServiceQuotaError, match="429.*HTTP_WAIT_BUDGET_SECONDS"):
        client.self_info()
    assert time.monotonic() - started < 5 and sim.request_count == 1


@pytest.mark.parametrize("secret, grant", [(None, "g"), ("s", None), ("", ""), (None, None)])
def test_missing_tokens_config_error_before_any_request(sim, secret, grant):
    with pytest.raises(ConfigError, match="ECONOMIC_"):
        EconomicClient(sim.url, secret, grant)
    assert sim.request_count == 0


def test_refused_tokens_are_auth_error_with_readable_message(sim):
    with EconomicClient(sim.url, sim.app_secret_token, "wrong-grant-123") as c, \
            pytest.raises(ServiceAuthError) as err:
        c.list_customers()
    message = str(err.value)
    assert "401" in message and "does not correspond" in message and "E02250" in message
    assert "wrong-grant-123" not in message and sim.app_secret_token not in message


def test_forbidden_role_is_auth_error(sim, client):
    sim.forbidden = True
    with pytest.raises(ServiceAuthError, match="403"):
        client.list_customers()


def test_self_and_single_customer(sim, client):
    sim.customers = [make_customer(5, "Kærgård Bryggeri ApS")]
    assert client.self_info()["company"]["name"] == sim.company_name
    assert client.get_customer(5).name == "Kærgård Bryggeri ApS"
    assert client.get_customer(6) is None


def test_bad_request_message(sim, client):
    sim.inject(400)
    with pytest.raises(ServiceError, match="HTTP 400"):
        client.self_info()


def test_next_page_to_another_host_keeps_our_host(sim, client):
    """Tokens are only sent to the configured base URL, even if a link points elsewhere."""
    assert client._same_origin("https://evil.example/customers?skippages=1&pagesize=1000") == \
        f"{sim.url}/customers?skippages=1&pagesize=1000"


def test_demo_tokens(sim):
    sim.customers = _many(3)
    with EconomicClient(sim.url, "demo", "demo") as c:
        assert len(c.list_customers()) == 3


def test_from_settings(sim):
    s = Settings(economic_api_url=sim.url, economic_app_secret_token=sim.app_secret_token,
                 economic_agreement_grant_token=sim.agreement_grant_token)
    with EconomicClient.from_settings(s) as c:
        assert c.self_info()["agreementNumber"]
    with pytest.raises(ConfigError):
        EconomicClient.from_settings(Settings(economic_api_url=sim.url))
