"""VtigerClient against the vTiger / Simply-CRM simulator over real HTTP."""

from __future__ import annotations

import time

import pytest

from lib.config import Settings
from lib.cvr import make_cvr
from lib.errors import ConfigError, RowError, ServiceAuthError, ServiceError, ServiceQuotaError, ServiceUnavailable
from lib.http_session import make_session
from lib.sandbox import VtigerSimulator, make_account
from lib.vtiger_client import RecordUnavailable, VtigerAuthError, VtigerClient, VtigerError, parse_error


@pytest.fixture
def sim():
    with VtigerSimulator() as s:
        yield s


@pytest.fixture
def simply():
    with VtigerSimulator(mode="simply") as s:
        yield s


def _client(sim: VtigerSimulator, **kw) -> VtigerClient:
    kw.setdefault("session", make_session(backoff=0))
    return VtigerClient(sim.url, sim.username, sim.access_key, **kw)


@pytest.fixture
def client(sim):
    c = _client(sim)
    yield c
    c.close()


def _accounts(n: int) -> list[dict]:
    return [make_account(i, f"Kunde {i} ApS", cvr=make_cvr(i)) for i in range(1, n + 1)]


def test_login_and_paging_until_empty_page(sim, client):
    """250 accounts: describe, count(*), then pages 0/100/200 and the empty page at 300; GET ops as query strings."""
    sim.accounts = _accounts(250)
    accounts = list(client.iter_accounts())
    assert len(accounts) == 250 and accounts[0].cvr == make_cvr(1) and client.accounts_counted == 250
    assert sim.counts["getchallenge"] == 1 and sim.counts["login"] == 1
    queries = [r.query["query"] for r in sim.requests if r.label == "query"]
    assert queries == ["SELECT count(*) FROM Accounts;",
                       *(f"SELECT * FROM Accounts ORDER BY id LIMIT {o},100;" for o in (0, 100, 200, 300))]
    login = next(r for r in sim.requests if r.label == "login")
    assert login.method == "POST" and "accessKey" in login.form and not login.query.get("accessKey")
    assert login.form["accessKey"] != sim.access_key  # md5(token + key), never the key itself


def test_short_page_that_is_not_the_last(sim, client):
    """Rows hidden by permissions are dropped after the LIMIT: a 97-row page is followed by more."""
    sim.accounts = _accounts(150)
    sim.hidden_ids = {"11x5", "11x17", "11x60"}
    ids = [a.id for a in client.iter_accounts()]
    assert len(ids) == 147 and "11x150" in ids
    assert sim.counts["query"] == 4  # count, two pages, the empty page


def test_a_whole_page_hidden_does_not_end_the_read(sim, client):
    """Page 100..199 is entirely hidden: it comes back empty, but count(*) says more remain, so paging goes on."""
    sim.accounts = _accounts(350)
    sim.hidden_ids = {f"11x{i}" for i in range(101, 201)}
    ids = [a.id for a in client.iter_accounts()]
    assert len(ids) == 250 and "11x350" in ids and "11x150" not in ids
    assert client.accounts_counted == 350  # the SQL count includes rows the user may not see


def test_without_a_count_an_empty_page_ends_the_read(sim, client):
    sim.accounts = _accounts(5)
    assert len(list(client.query_all("SELECT * FROM Accounts"))) == 5
    assert client.count("SELECT * FROM Nonsense WHERE") is None

def test_expired_session_mid_paging_relogins_once(sim, client):
    sim.accounts = _accounts(350)  # 5 queries: pages at 0..300 and the empty page at 400
    sim.expire_session_after_queries = 3
    sim.expiry_code = "SESSION_EXPIRED"
    assert len(list(client.iter_accounts())) == 350
    assert sim.counts["login"] == 2 and client.logins == 2


@pytest.mark.parametrize("code", ["INVALID_SESSIONID", "SESSION_LEFT_IDLE"])
def test_other_session_codes_relogin(sim, client, code):
    sim.accounts = _accounts(3)
    client.login()
    sim.expiry_code = code
    sim.expire_sessions()
    assert len(list(client.query_all("SELECT * FROM Accounts"))) == 3
    assert sim.counts["login"] == 2


def test_session_failing_again_after_relogin_is_auth_error(sim, client):
    sim.accounts = _accounts(3)
    sim.expire_session_after_queries = 0
    with pytest.raises(ServiceAuthError, match="expired again"):
        list(client.query_all("SELECT * FROM Accounts"))
    assert sim.counts["login"] == 2


def test_wrong_access_key_is_auth_error_without_the_key(sim):
    with VtigerClient(sim.url, sim.username, "not-the-key-42") as c, pytest.raises(ServiceAuthError) as err:
        c.login()
    assert "INVALID_USER_CREDENTIALS" in str(err.value) and "not-the-key-42" not in str(err.value)


@pytest.mark.parametrize("style", ["code", "errorCode", "errorType"])
def test_error_field_name_variants(sim, client, style):
    """[U] Simply's docs name the error fields differently: all three shapes are read."""
    sim.error_style = style
    with pytest.raises(VtigerError) as err:
        client.query_page("SELECT * FROM Accounts")  # no trailing ';'
    assert err.value.code == "QUERY_SYNTAX_ERROR"


def test_parse_error_shapes():
    assert parse_error({"code": "A", "message": "m"}) == ("A", "m")
    assert parse_error({"errorCode": "B", "errorMessage": "n"}) == ("B", "n")
    assert parse_error({"errorType": "C", "errorMsg": "o"}) == ("C", "o")
    assert parse_error("D") == ("D", "D")
    assert parse_error(None)[0] == "UNKNOWN_ERROR"


def test_cvr_field_found_by_label_and_values_used_as_sent(sim, client):
    """vTiger decodes entities itself: a literal "&amp;" stored in the CRM stays "&amp;" (never decoded twice)."""
    sim.cvr_field = "cf_991"
    sim.cvr_label = "CVR nr."
    sim.accounts = [make_account(42, "Møller & Søn Tømrerfirma A/S", cvr=make_cvr(3), cvr_field="cf_991",
                                 bill_city="Ærøskøbing", description="Bøg &amp; Co")]
    [account] = list(client.iter_accounts())
    assert client.cvr_field() == "cf_991"
    assert account.name == "Møller & Søn Tømrerfirma A/S" and account.city == "Ærøskøbing"
    assert account.fields["description"] == "Bøg &amp; Co"
    assert account.cvr == make_cvr(3) and account.id == "11x42"
    assert sim.counts["describe"] == 1


def test_simply_update_keeps_a_literal_entity(simply):
    """retrieve + full update writes back exactly what was read: "&amp;" is not turned into "&"."""
    simply.accounts = [make_account(7, "Bøg &amp; Co ApS", cvr="")]
    with _client(simply, supports_revise=False) as c:
        c.update_fields("11x7", {"cf_853": make_cvr(7)})
    assert simply.accounts[0]["accountname"] == "Bøg &amp; Co ApS" and simply.accounts[0]["cf_853"] == make_cvr(7)


def test_configured_cvr_field_skips_describe(sim):
    sim.accounts = [make_account(1, "A", cvr="", siccode=make_cvr(4))]
    with _client(sim, cvr_field="siccode") as c:
        assert [a.cvr for a in c.iter_accounts()] == [make_cvr(4)]
    assert sim.counts["describe"] == 0


def test_invalid_and_missing_cvr(sim, client):
    sim.accounts = [make_account(1, "A", cvr="12345678"), make_account(2, "B", cvr="")]
    accounts = list(client.iter_accounts())
    assert [(a.cvr_raw, a.cvr) for a in accounts] == [("12345678", None), (None, None)]


def test_no_cvr_field_at_all(sim, client):
    sim.cvr_field = None
    sim.accounts = [make_account(1, "A", cvr_field="")]
    assert client.cvr_field() is None
    assert [a.cvr for a in client.iter_accounts()] == [None]


def test_query_with_danish_letters(sim, client):
    sim.accounts = [make_account(1, "Blåbærgården Ærø ApS"), make_account(2, "Hansen ApS")]
    rows = list(client.query_all("SELECT * FROM Accounts WHERE accountname LIKE '%Blåbær%'"))
    assert [r["accountname"] for r in rows] == ["Blåbærgården Ærø ApS"]


def test_revise_on_vtiger(sim, client):
    sim.accounts = [make_account(7, "Kærgård Bryggeri ApS", cvr="", email1="oel@kaergaard.dk")]
    client.update_fields("11x7", {"cf_853": make_cvr(7)})
    assert sim.accounts[0]["cf_853"] == make_cvr(7) and sim.accounts[0]["email1"] == "oel@kaergaard.dk"
    assert sim.counts["revise"] == 1 and sim.counts["update"] == 0


def test_simply_retrieve_and_full_update(simply):
    """Simply-CRM from settings never calls revise; the full update keeps every other field."""
    simply.accounts = [make_account(7, "Kærgård Bryggeri ApS", cvr="", email1="oel@kaergaard.dk")]
    s = Settings(simplycrm_url=simply.url, simplycrm_username=simply.username, simplycrm_access_key=simply.access_key)
    with VtigerClient.from_settings("simplycrm", s) as c:
        c.update_fields("11x7", {"cf_853": make_cvr(7)})
    assert simply.accounts[0]["cf_853"] == make_cvr(7) and simply.accounts[0]["email1"] == "oel@kaergaard.dk"
    assert simply.counts["revise"] == 0 and simply.counts["retrieve"] == 1 and simply.counts["update"] == 1


@pytest.mark.parametrize("style", ["php", "json"])
def test_auto_mode_falls_back_when_revise_is_unknown(simply, style):
    """Real vTiger answers an unknown operation with a PHP error page (no JSON): the fallback must see that too."""
    simply.unknown_operation = style
    simply.accounts = [make_account(7, "A", cvr=""), make_account(8, "B", cvr="")]
    with _client(simply, supports_revise=None) as c:
        c.update_fields("11x7", {"cf_853": make_cvr(7)})
        c.update_fields("11x8", {"cf_853": make_cvr(8)})
        assert c.supports_revise is False
    assert simply.counts["revise"] == 1 and simply.counts["update"] == 2


def test_revise_forced_on_simply_fails_clearly(simply):
    simply.accounts = [make_account(7, "A")]
    with _client(simply, supports_revise=True) as c, pytest.raises(VtigerError, match="not a webservice reply") as err:
        c.update_fields("11x7", {"cf_853": "x"})
    assert err.value.code == "NOT_A_WEBSERVICE_REPLY"


@pytest.mark.parametrize("code", ["ACCESS_DENIED", "RECORD_NOT_FOUND"])
@pytest.mark.parametrize("operation", ["retrieve", "revise", "update"])
def test_a_deleted_record_is_a_row_error_not_an_auth_failure(sim, client, code, operation):
    """vTiger 8 answers ACCESS_DENIED for a deleted record: that record is skipped, the session stays usable."""
    sim.missing_record_code = code
    sim.accounts = [make_account(1, "A", cvr="")]
    with pytest.raises(RecordUnavailable, match="11x999") as err:
        if operation == "retrieve":
            client.retrieve("11x999")
        else:
            client.supports_revise = operation == "revise"
            client.update_fields("11x999", {"cf_853": make_cvr(1)})
    assert isinstance(err.value, RowError) and err.value.key == "11x999" and err.value.code == code
    assert client.retrieve("11x1")["accountname"] == "A"
    assert sim.counts["login"] == 1


def test_access_denied_at_getchallenge_is_an_auth_failure(sim):
    with VtigerClient(sim.url, "nobody", sim.access_key) as c, pytest.raises(VtigerAuthError, match="ACCESS_DENIED"):
        c.login()


def test_429_then_success(sim, client):
    sim.accounts = _accounts(2)
    sim.inject(429, retry_after=1, when=lambda r: r.label == "query")
    started = time.monotonic()
    assert len(list(client.iter_accounts())) == 2
    assert time.monotonic() - started >= 0.9


def test_500_once_on_a_page_is_retried(sim, client):
    sim.accounts = _accounts(150)
    sim.inject(500, when=lambda r: "LIMIT 100,100" in r.query.get("query", ""))
    assert len(list(client.iter_accounts())) == 150


def test_persistent_500_and_429_without_wait_budget(sim):
    with _client(sim, session=make_session(backoff=0, wait_budget=0)) as client:
        sim.inject(503, times=10)
        with pytest.raises(ServiceUnavailable):
            client.login()
        sim.faults.clear()
        sim.inject(429, times=10, retry_after=1)
        with pytest.raises(ServiceQuotaError, match="HTTP_WAIT_BUDGET_SECONDS"):
            client.login()


def test_not_a_webservice(sim):
    with VtigerClient(sim.url + "/crm", sim.username, sim.access_key) as c, pytest.raises(ServiceError, match="404"):
        c.login()


def test_missing_settings_config_error(sim):
    with pytest.raises(ConfigError, match="VTIGER_ACCESS_KEY"):
        VtigerClient(sim.url, "admin", None)
    with pytest.raises(ConfigError, match="SIMPLYCRM_URL"):
        VtigerClient.from_settings("simplycrm", Settings())
    assert sim.request_count == 0


def test_endpoint_accepts_full_webservice_url(sim):
    with VtigerClient(sim.endpoint, sim.username, sim.access_key) as c:
        c.login()
        assert c.session_name
