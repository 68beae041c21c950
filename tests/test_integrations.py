"""Integration status and connection tests, and the Settings → Integrations page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.config import Settings
from lib.integrations import integration_status, test_connection
from lib.sandbox import running_sandbox

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "integrations.py")


@pytest.fixture
def sandbox(monkeypatch):
    with running_sandbox() as sb:
        for name, value in sb.env().items():
            monkeypatch.setenv(name, value)
        yield sb


def test_sandbox_settings_make_every_connection_test_green(sandbox):
    """All four targets answer with the settings `manage.py sandbox` prints."""
    for service in ("cvr", "economic", "vtiger", "simplycrm"):
        ok, message = test_connection(service)
        assert ok, message
    assert sandbox.cvrapi.request_count == 1 and sandbox.cvrapi.requests[0].path == "/"
    assert sandbox.cvrapi.used == {}  # no lookup of the 50 a day spent
    assert sandbox.economic.counts["/self"] == 1
    assert sandbox.vtiger.counts["login"] == 1 and sandbox.simplycrm.counts["login"] == 1


def test_status_masks_secrets(sandbox):
    statuses = {s.service: s for s in integration_status()}
    assert all(s.configured for s in statuses.values())
    shown = repr(statuses)
    for secret in (sandbox.economic.app_secret_token, sandbox.economic.agreement_grant_token,
                   sandbox.vtiger.access_key):
        assert secret not in shown
    assert statuses["economic"].settings["ECONOMIC_APP_SECRET_TOKEN"] == "••••••"
    assert statuses["vtiger"].settings["VTIGER_URL"] == sandbox.vtiger.url


def test_unconfigured_services_say_what_is_missing():
    statuses = {s.service: s for s in integration_status(Settings())}
    assert not statuses["cvr"].configured and statuses["cvr"].missing == ("CVR_USER_AGENT",)
    assert "VTIGER_URL" in statuses["vtiger"].missing
    ok, message = test_connection("cvr", Settings())
    assert not ok and "CVR_USER_AGENT" in message
    ok, message = test_connection("economic", Settings())
    assert not ok and "ECONOMIC_APP_SECRET_TOKEN" in message
    assert test_connection("nope")[0] is False


def test_refused_credentials_show_the_problem_not_the_secret(sandbox, monkeypatch):
    monkeypatch.setenv("ECONOMIC_AGREEMENT_GRANT_TOKEN", "wrong-grant-xyz")
    monkeypatch.setenv("VTIGER_ACCESS_KEY", "wrong-key-xyz")
    ok, message = test_connection("economic")
    assert not ok and "401" in message and "wrong-grant-xyz" not in message
    ok, message = test_connection("vtiger")
    assert not ok and "INVALID_USER_CREDENTIALS" in message and "wrong-key-xyz" not in message
    monkeypatch.setenv("CVR_USER_AGENT", "BMC Networks ApS – BMC Hub – Anna anna@bmc.dk")  # en dashes
    ok, message = test_connection("cvr")
    assert not ok and "EN DASH" in message and "Latin-1" in message
    assert sandbox.cvrapi.request_count == 0


def test_connection_tests_never_retry_or_wait(sandbox):
    """doctor runs these from cron: a refusal is reported at once, with one request, not waited out."""
    sandbox.vtiger.inject(429, times=5)  # no Retry-After: a job would back off; a test does not
    sandbox.economic.inject(503, times=5, retry_after=1)
    sandbox.simplycrm.inject(500, times=5)
    for service, sim in (("vtiger", sandbox.vtiger), ("economic", sandbox.economic),
                         ("simplycrm", sandbox.simplycrm)):
        ok, message = test_connection(service)
        assert not ok and sim.request_count == 1, message


def test_doctor_spends_no_cvr_lookup(sandbox):
    from lib.config import get_settings
    from lib.doctor import check_integrations

    checks = {c.name: c for c in check_integrations(get_settings())}
    assert checks["integration:cvr"].status == "ok", checks["integration:cvr"].message
    assert "No lookup spent" in checks["integration:cvr"].message
    assert sandbox.cvrapi.used == {} and not sandbox.cvrapi.counts["vat"]


def test_page_shows_services_and_tests_connections(sandbox):
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception
    assert [h.value for h in at.subheader] == ["cvrapi.dk", "e-conomic", "vTiger", "Simply-CRM"]
    page_text = " ".join(str(t.value) for t in at.table)
    assert sandbox.economic.agreement_grant_token not in page_text
    at.button(key="test_economic").click().run()
    assert [s.value for s in at.success] and "agreement" in at.success[0].value
    at.button(key="test_simplycrm").click().run()
    shown = [s.value for s in at.success]  # both results stay on the page, each under its service
    assert len(shown) == 2 and "agreement" in shown[0] and "logged in" in shown[1]
    at.button(key="test_all").click().run()
    assert len(at.success) == 4 and not at.error


def test_page_shows_the_exact_problem_when_unconfigured():
    at = AppTest.from_file(PAGE, default_timeout=30).run()
    assert not at.exception
    at.button(key="test_cvr").click().run()
    assert at.error and "CVR_USER_AGENT" in at.error[0].value
