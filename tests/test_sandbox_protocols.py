"""The simulators' wire format, pinned to docs external-apis.md with raw `requests` calls (no client code).

A wrong simulator would hide a wrong client, so these tests talk HTTP directly.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import requests

from lib.cvr import make_cvr
from lib.sandbox import (
    CvrApiSimulator,
    EconomicSimulator,
    VtigerSimulator,
    make_account,
    make_customer,
    running_sandbox,
)

UA = "Acme IT ApS - Kundedashboard - Jens Hansen jens@acme.dk"


# cvrapi.dk (§1)


@pytest.fixture
def cvr():
    with CvrApiSimulator() as s:
        yield s


def _cvr_get(sim, ua=UA, **params):
    return requests.get(sim.url, params={"country": "dk", "version": "6", **params}, headers={"User-Agent": ua})


def test_cvrapi_v6_single_object_with_ascii_escapes(cvr):
    number = make_cvr(1)
    cvr.add_company(number, "Blåbærgården Ærø ApS", city="Hillerød")
    r = _cvr_get(cvr, vat=number)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    assert "\\u00f8" in r.text and "ø" not in r.text  # the real service escapes non-ASCII
    body = r.json()
    assert isinstance(body, dict) and body["vat"] == int(number) and body["t"] == 100 and body["version"] == 6
    assert body["name"] == "Blåbærgården Ærø ApS" and body["city"] == "Hillerød"
    for key in ("address", "zipcode", "startdate", "enddate", "employees", "industrycode", "companydesc",
                "productionunits", "protected", "owners"):
        assert key in body
    assert body["productionunits"][0]["main"] is True


def test_cvrapi_search_and_name_return_one_object_not_a_list(cvr):
    cvr.add_company(make_cvr(2), "Møller Byg ApS")
    cvr.add_company(make_cvr(3), "Møller Byggeservice ApS")
    assert isinstance(_cvr_get(cvr, name="møller byg").json(), dict)
    assert _cvr_get(cvr, search=make_cvr(3)).json()["name"] == "Møller Byggeservice ApS"
    assert _cvr_get(cvr, search="Møller Byg ApS").json()["vat"] == int(make_cvr(2))
    cvr.hits_mode = True
    assert len(_cvr_get(cvr, name="møller byg").json()["hits"]) == 2


@pytest.mark.parametrize("ua", ["", "python-requests/2.32.0", "mit projekt", "Acme - Hub"])
def test_cvrapi_invalid_ua(cvr, ua):
    r = _cvr_get(cvr, ua=ua, vat=make_cvr(1))
    assert (r.status_code, r.json()) == (200, {"error": "INVALID_UA"})


def test_cvrapi_not_found_variants(cvr):
    assert (_cvr_get(cvr, vat=make_cvr(9)).status_code, _cvr_get(cvr, vat=make_cvr(9)).json()) == \
        (200, {"error": "NOT_FOUND"})
    cvr.not_found_mode = "404"
    r = _cvr_get(cvr, name="Ingen")
    assert r.status_code == 404 and r.json() == {"error": "NOT_FOUND"}
    cvr.not_found_mode = "404-empty"
    r = _cvr_get(cvr, name="Ingen")
    assert r.status_code == 404 and r.content == b""


def test_cvrapi_quota_per_ip_then_quota_exceeded(cvr):
    cvr.quota = 3
    statuses = [_cvr_get(cvr, vat=make_cvr(i)).json() for i in range(5)]
    assert statuses[:3] == [{"error": "NOT_FOUND"}] * 3
    assert statuses[3:] == [{"error": "QUOTA_EXCEEDED"}] * 2
    cvr.tokens.add("paid")
    assert _cvr_get(cvr, vat=make_cvr(1), token="paid").json() == {"error": "NOT_FOUND"}


def test_cvrapi_free_quota_default_is_50(cvr):
    assert cvr.quota == 50


def test_cvrapi_banned_and_error_status_and_message(cvr):
    cvr.banned = True
    cvr.error_status = 403
    cvr.error_message = True
    r = _cvr_get(cvr, vat=make_cvr(1))
    assert r.status_code == 403 and r.json()["error"] == "BANNED" and "banned" in r.json()["message"]


def test_cvrapi_injected_429_carries_retry_after(cvr):
    cvr.inject(429, retry_after=7)
    r = _cvr_get(cvr, vat=make_cvr(1))
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert _cvr_get(cvr, vat=make_cvr(1)).status_code == 200
    assert cvr.counts["vat"] == 2 and cvr.request_count == 2


# e-conomic (§3)


@pytest.fixture
def eco():
    with EconomicSimulator() as s:
        yield s


def _eco_get(sim, path, secret=None, grant=None, **params):
    headers = {"X-AppSecretToken": secret or sim.app_secret_token,
               "X-AgreementGrantToken": grant or sim.agreement_grant_token}
    return requests.get(sim.url + path, params=params, headers=headers)


def test_economic_envelope_and_paging(eco):
    eco.customers = [make_customer(i, f"Kunde {i}") for i in range(1, 46)]
    first = _eco_get(eco, "/customers").json()
    p = first["pagination"]
    assert len(first["collection"]) == 20 and p["pageSize"] == 20 and p["maxPageSizeAllowed"] == 1000
    assert p["results"] == 45 and p["resultsWithoutFilter"] == 45 and p["skipPages"] == 0
    assert p["nextPage"] == f"{eco.url}/customers?skippages=1&pagesize=20"
    assert p["lastPage"] == f"{eco.url}/customers?skippages=2&pagesize=20"
    assert "previousPage" not in p and first["metaData"]["create"]["httpMethod"] == "post"
    last = requests.get(p["lastPage"], headers={"X-AppSecretToken": eco.app_secret_token,
                                                "X-AgreementGrantToken": eco.agreement_grant_token}).json()
    assert len(last["collection"]) == 5 and "nextPage" not in last["pagination"]
    assert "previousPage" in last["pagination"]
    assert _eco_get(eco, "/customers", pagesize=1001).status_code == 400
    eco.oversize_pagesize = "clamp"
    assert _eco_get(eco, "/customers", pagesize=5000).json()["pagination"]["pageSize"] == 1000


def test_economic_customer_omits_false_and_null(eco):
    eco.customers = [make_customer(1, "Blåbærgården Ærø ApS", barred=False, email=None),
                     make_customer(2, "Spærret A/S", barred=True)]
    items = _eco_get(eco, "/customers").json()["collection"]
    assert "barred" not in items[0] and "email" not in items[0] and items[1]["barred"] is True
    assert items[0]["name"] == "Blåbærgården Ærø ApS" and items[0]["self"] == f"{eco.url}/customers/1"
    assert items[0]["customerGroup"]["self"].endswith("/customer-groups/1")


def test_economic_auth_errors_shape(eco):
    r = requests.get(eco.url + "/customers")
    assert r.status_code == 401
    body = r.json()
    assert {"message", "developerHint", "errorCode", "logId", "httpStatusCode"} <= set(body)
    assert body["httpStatusCode"] == 401
    r = _eco_get(eco, "/customers", grant="other")
    assert r.status_code == 401 and r.json()["errorCode"] == "E02250"
    eco.forbidden = True
    assert _eco_get(eco, "/customers").status_code == 403
    assert _eco_get(eco, "/self").status_code == 200


def test_economic_demo_is_get_only(eco):
    assert _eco_get(eco, "/self", secret="demo", grant="demo").status_code == 200
    r = requests.post(eco.url + "/customers", json={}, headers={"X-AppSecretToken": "demo",
                                                                "X-AgreementGrantToken": "demo"})
    assert r.status_code == 403


def test_economic_filters(eco):
    eco.customers = [make_customer(1, "Blåbærgården Ærø ApS", city="Ærøskøbing"),
                     make_customer(2, "Hansen (Vest) ApS", city="Varde"),
                     make_customer(3, "Hansen Øst ApS", city="Varde", barred=True)]

    def names(flt):
        return [c["name"] for c in _eco_get(eco, "/customers", filter=flt).json()["collection"]]

    assert names("name$like:blåbær") == ["Blåbærgården Ærø ApS"]
    assert names("city$eq:varde$and:barred$eq:true") == ["Hansen Øst ApS"]
    assert names("customerNumber$in:[1,3]") == ["Blåbærgården Ærø ApS", "Hansen Øst ApS"]
    assert names("name$eq:Hansen $(Vest$) ApS") == ["Hansen (Vest) ApS"]
    assert names("name$like:hansen*$and:(city$eq:Ærøskøbing$or:barred$eq:true)") == ["Hansen Øst ApS"]
    r = _eco_get(eco, "/customers", filter="color$eq:blue")
    assert r.status_code == 400 and "allowedFilteringFields" in r.json()
    assert "filter=" in _eco_get(eco, "/customers", filter="city$eq:Varde").json()["pagination"]["firstPage"]


def test_economic_unknown_params_are_ignored_and_single_404(eco):
    eco.customers = [make_customer(1, "A"), make_customer(2, "B")]
    assert len(_eco_get(eco, "/customers", email="x").json()["collection"]) == 2
    r = _eco_get(eco, "/customers/99")
    assert r.status_code == 404 and r.json()["httpStatusCode"] == 404


def test_economic_injected_faults_use_error_shape(eco):
    eco.inject(500)
    r = _eco_get(eco, "/self")
    assert r.status_code == 500 and r.json()["httpStatusCode"] == 500
    eco.inject(429, retry_after=2)
    r = _eco_get(eco, "/self")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"


# vTiger / Simply-CRM (§4, §5)


@pytest.fixture
def vt():
    with VtigerSimulator() as s:
        yield s


def _login(sim) -> str:
    token = requests.get(sim.endpoint, params={"operation": "getchallenge", "username": sim.username}).json()
    assert token["success"] and {"token", "serverTime", "expireTime"} <= set(token["result"])
    assert token["result"]["expireTime"] - token["result"]["serverTime"] == 300
    key = hashlib.md5((token["result"]["token"] + sim.access_key).encode()).hexdigest()
    r = requests.post(sim.endpoint, data={"operation": "login", "username": sim.username, "accessKey": key})
    result = r.json()["result"]
    assert {"sessionName", "userId", "version", "vtigerVersion"} <= set(result)
    return result["sessionName"]


def _q(sim, session, query):
    return requests.get(sim.endpoint, params={"operation": "query", "sessionName": session, "query": query}).json()


def test_vtiger_errors_are_http_200_envelopes(vt):
    r = requests.get(vt.endpoint, params={"operation": "query", "sessionName": "nope", "query": "SELECT * FROM Accounts;"})
    assert r.status_code == 200
    assert r.json() == {"success": False, "error": {"code": "INVALID_SESSIONID",
                                                     "message": "Session Identifier provided is Invalid"}}
    r = requests.get(vt.endpoint, params={"operation": "frobnicate"})  # real vTiger 8.2: a PHP error, no JSON
    assert r.status_code == 200 and "Fatal error" in r.text and not r.text.lstrip().startswith("{")
    vt.unknown_operation = "json"  # the documented envelope, for installs that give it
    r = requests.get(vt.endpoint, params={"operation": "frobnicate"})
    assert r.status_code == 200 and r.json()["error"]["code"] == "UNKNOWN_OPERATION"
    r = requests.get(vt.endpoint, params={"operation": "getchallenge", "username": "nobody"})
    assert r.json()["error"] == {"code": "ACCESS_DENIED", "message": "username does not exists"}
    r = requests.get(vt.endpoint, params={"operation": "query", "query": "SELECT * FROM Accounts;"})
    assert r.json()["error"]["code"] == "AUTHENTICATION_REQUIRED"


def test_vtiger_login_md5_and_post_only(vt):
    requests.get(vt.endpoint, params={"operation": "getchallenge", "username": vt.username})
    r = requests.post(vt.endpoint, data={"operation": "login", "username": vt.username, "accessKey": vt.access_key})
    assert r.json()["error"]["code"] == "INVALID_USER_CREDENTIALS"
    # login is a POST operation: parameters in the query string are not read
    r = requests.post(vt.endpoint, params={"operation": "login", "username": vt.username, "accessKey": "x"})
    assert r.json()["success"] is False
    assert _login(vt)


def test_vtiger_query_limits_and_semicolon(vt):
    vt.accounts = [make_account(i, f"Kunde {i}") for i in range(1, 251)]
    session = _login(vt)
    assert _q(vt, session, "SELECT * FROM Accounts")["error"]["code"] == "QUERY_SYNTAX_ERROR"
    assert len(_q(vt, session, "SELECT * FROM Accounts;")["result"]) == 100
    assert len(_q(vt, session, "SELECT * FROM Accounts LIMIT 500;")["result"]) == 100
    page = _q(vt, session, "SELECT * FROM Accounts ORDER BY id LIMIT 200,100;")["result"]
    assert len(page) == 50 and page[0]["id"] == "11x201"
    assert _q(vt, session, "SELECT * FROM Accounts ORDER BY id LIMIT 300,100;")["result"] == []
    assert _q(vt, session, "SELECT count(*) FROM Accounts;")["result"] == [{"count": "250"}]
    cols = _q(vt, session, "SELECT accountname FROM Accounts LIMIT 1;")["result"][0]
    assert set(cols) == {"accountname", "id"}
    assert _q(vt, session, "SELECT nosuch FROM Accounts;")["error"]["code"] == "ACCESS_DENIED"


def test_vtiger_values_are_strings_and_where(vt):
    vt.accounts = [make_account(1, "Blåbærgården Ærø ApS", employees=12), make_account(2, "Hansen ApS")]
    session = _login(vt)
    rows = _q(vt, session, "SELECT * FROM Accounts WHERE accountname LIKE '%blåbær%' OR accountname = 'x';")["result"]
    assert len(rows) == 1 and rows[0]["employees"] == "12" and rows[0]["emailoptout"] == "0"
    assert all(isinstance(v, str) for v in rows[0].values())
    rows = _q(vt, session, "SELECT * FROM Accounts WHERE id IN ('11x2');")["result"]
    assert [r["accountname"] for r in rows] == ["Hansen ApS"]


def test_vtiger_hidden_rows_dropped_after_limit(vt):
    vt.accounts = [make_account(i, f"K{i}") for i in range(1, 201)]
    vt.hidden_ids = {"11x3"}
    session = _login(vt)
    assert len(_q(vt, session, "SELECT * FROM Accounts ORDER BY id LIMIT 0,100;")["result"]) == 99
    assert len(_q(vt, session, "SELECT * FROM Accounts ORDER BY id LIMIT 100,100;")["result"]) == 100
    assert _q(vt, session, "SELECT count(*) FROM Accounts;")["result"] == [{"count": "200"}]  # SQL count: all rows


def test_vtiger_flood_control_headers_and_429(vt):
    """vTiger Cloud: X-FloodControl-* on every reply; once the window is used up, 429 without Retry-After."""
    vt.flood_limit, vt.flood_window = 3, 60
    answers = [requests.get(vt.endpoint, params={"operation": "getchallenge", "username": vt.username})
               for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["X-FloodControl-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert answers[0].headers["X-FloodControl-MinuteLimit"] == "3"
    assert 0 < int(answers[3].headers["X-FloodControl-Reset"]) <= 60 and "Retry-After" not in answers[3].headers
    vt.flood_headers = False
    bare = requests.get(vt.endpoint, params={"operation": "getchallenge", "username": vt.username})
    assert bare.status_code == 429 and not any(h.startswith("X-FloodControl") for h in bare.headers)


def test_economic_token_bucket_429_without_retry_after(eco):
    eco.bucket_size, eco.bucket_refill_per_second = 2, 0.001
    answers = [_eco_get(eco, "/self") for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert "Retry-After" not in answers[2].headers and answers[2].json()["httpStatusCode"] == 429


def test_vtiger_describe_and_retrieve(vt):
    vt.accounts = [make_account(42, "Blåbærgården Ærø ApS", cvr=make_cvr(1))]
    session = _login(vt)
    d = requests.get(vt.endpoint, params={"operation": "describe", "sessionName": session,
                                          "elementType": "Accounts"}).json()["result"]
    assert d["idPrefix"] == "11" and d["name"] == "Accounts"
    cvr_field = next(f for f in d["fields"] if "CVR" in f["label"])
    assert cvr_field["name"] == "cf_853" and {"name", "label", "mandatory", "type"} <= set(cvr_field)
    rec = requests.get(vt.endpoint, params={"operation": "retrieve", "sessionName": session, "id": "11x42"}).json()
    assert rec["result"]["cf_853"] == make_cvr(1)
    missing = requests.get(vt.endpoint, params={"operation": "retrieve", "sessionName": session, "id": "11x9"})
    assert missing.json()["error"] == {"code": "ACCESS_DENIED",  # vTiger 8.2 for a deleted or unknown record
                                       "message": "Permission to perform the operation is denied"}
    vt.missing_record_code = "RECORD_NOT_FOUND"
    missing = requests.get(vt.endpoint, params={"operation": "retrieve", "sessionName": session, "id": "11x9"})
    assert missing.json()["error"]["code"] == "RECORD_NOT_FOUND"


def test_vtiger_update_is_whole_record_and_revise_partial(vt):
    vt.accounts = [make_account(1, "A", email1="a@example.dk")]
    session = _login(vt)
    r = requests.post(vt.endpoint, data={"operation": "update", "sessionName": session,
                                         "element": '{"id": "11x1", "email1": "b@example.dk"}'}).json()
    assert r["error"]["code"] == "MANDATORY_FIELDS_MISSING"
    r = requests.post(vt.endpoint, data={"operation": "revise", "sessionName": session,
                                         "element": '{"id": "11x1", "email1": "b@example.dk"}'}).json()
    assert r["success"] and r["result"]["accountname"] == "A" and r["result"]["email1"] == "b@example.dk"


def test_simply_mode_rejects_revise_and_error_styles():
    with VtigerSimulator(mode="simply") as s:
        s.accounts = [make_account(1, "A")]
        session = _login(s)
        s.unknown_operation = "json"
        r = requests.post(s.endpoint, data={"operation": "revise", "sessionName": session,
                                            "element": '{"id": "11x1", "email1": "b@example.dk"}'})
        assert r.status_code == 200 and r.json()["error"]["code"] == "UNKNOWN_OPERATION"
        s.error_style = "errorType"
        assert set(_q(s, session, "bad")["error"]) == {"errorType", "errorMsg"}


def test_vtiger_session_expiry_after_n_queries_and_entities(vt):
    vt.accounts = [make_account(1, "Møller & Søn")]
    vt.expire_session_after_queries = 1
    vt.expiry_code = "SESSION_LEFT_IDLE"
    vt.entity_encode = True
    session = _login(vt)
    assert _q(vt, session, "SELECT * FROM Accounts;")["result"][0]["accountname"] == "Møller &amp; Søn"
    assert _q(vt, session, "SELECT * FROM Accounts;")["error"]["code"] == "SESSION_LEFT_IDLE"
    assert _q(vt, session, "SELECT * FROM Accounts;")["error"]["code"] == "SESSION_LEFT_IDLE"


def test_vtiger_challenge_expiry(vt):
    vt.challenge_ttl = -1
    token = requests.get(vt.endpoint, params={"operation": "getchallenge", "username": vt.username}).json()
    key = hashlib.md5((token["result"]["token"] + vt.access_key).encode()).hexdigest()
    r = requests.post(vt.endpoint, data={"operation": "login", "username": vt.username, "accessKey": key})
    assert r.json()["error"]["code"] == "INVALID_AUTH_TOKEN"


# shared


def test_sandbox_ports_and_counters():
    with running_sandbox() as sb:
        ports = {sb.cvrapi.port, sb.economic.port, sb.vtiger.port, sb.simplycrm.port}
        assert len(ports) == 4 and all(p > 0 for p in ports)
        assert sb.cvrapi.companies and sb.economic.customers and sb.vtiger.accounts and sb.simplycrm.accounts
        requests.get(sb.vtiger.endpoint, params={"operation": "getchallenge", "username": "admin"})
        assert sb.vtiger.counts["getchallenge"] == 1 and sb.simplycrm.request_count == 0
        sb.vtiger.reset_counters()
        assert sb.vtiger.request_count == 0


def test_latency_knob():
    import time

    with EconomicSimulator() as s:
        s.latency = 0.3
        started = time.monotonic()
        requests.get(s.url + "/self")
        assert time.monotonic() - started >= 0.3


def test_paused_holds_answers_until_the_block_ends(cvr):
    """`paused()` is the public way to hold a simulator: a request waits, uncounted, and is answered after."""
    number = make_cvr(7)
    cvr.add_company(number, "Pause ApS")
    with ThreadPoolExecutor(1) as pool:
        with cvr.paused():
            asked = pool.submit(_cvr_get, cvr, vat=number)
            done, _ = wait([asked], timeout=0.5)
            assert not done and cvr.request_count == 0
        assert asked.result(timeout=10).json()["name"] == "Pause ApS"
    assert cvr.request_count == 1
