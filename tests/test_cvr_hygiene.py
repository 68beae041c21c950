"""cvrapi.dk hygiene (issue #18): a User-Agent HTTP cannot carry, the QUOTA_EXCEEDED hint, counting every request."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lib.cvr import make_cvr
from lib.cvr_cache import CvrCache, record_requests, requests_today
from lib.cvr_client import CvrClient, check_user_agent
from lib.cvr_lookup import quota_status
from lib.errors import ConfigError, ServiceQuotaError, ServiceUnavailable
from lib.http_session import make_session
from lib.sandbox import SANDBOX_USER_AGENT, CvrApiSimulator
from tests.conftest import ROOT

EN_DASH_UA = "BMC Networks ApS – BMC Hub – Anna Holm anna@bmc.dk"  # pasted from a word processor


@pytest.fixture
def sim():
    with CvrApiSimulator() as s:
        s.add_company(make_cvr(41), "Kærgård Bryggeri ApS")
        yield s


def test_user_agent_outside_latin1_is_a_configuration_error_before_any_request(sim):
    with pytest.raises(ConfigError, match=r"'–' \(EN DASH\) at position 18.*Latin-1"):
        check_user_agent(EN_DASH_UA)
    with pytest.raises(ConfigError, match="EN DASH"):
        CvrClient(sim.url, EN_DASH_UA)
    assert check_user_agent("Bøgh & Co ApS - Kundedashboard - Søren Ærø s@bøgh.dk")  # æøå are Latin-1
    assert sim.request_count == 0


@pytest.mark.parametrize("command", [["cvr-lookup", "--json"], ["doctor"]])
def test_cli_with_an_en_dash_user_agent_exits_2_with_the_reason(db_url, sim, command):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": db_url, "CVR_API_URL": sim.url,
           "CVR_USER_AGENT": EN_DASH_UA}
    done = subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert "Traceback" not in done.stderr and "UnicodeEncodeError" not in done.stderr + done.stdout
    assert "EN DASH" in done.stderr + done.stdout
    if command[0] == "cvr-lookup":
        assert done.returncode == 2, done.stderr
    else:
        assert done.returncode != 0  # doctor: the cvr check fails with the reason
    assert sim.request_count == 0


def test_quota_exceeded_names_the_user_agent(sim):
    sim.quota = 0
    with CvrClient(sim.url, SANDBOX_USER_AGENT) as client, pytest.raises(ServiceQuotaError) as err:
        client.lookup(make_cvr(41))
    assert "QUOTA_EXCEEDED" in str(err.value) and "User-Agent" in str(err.value)
    assert SANDBOX_USER_AGENT in str(err.value) and "tomorrow" in str(err.value)


def test_every_request_sent_today_is_counted(engine, sim):
    """Answers are cached, but errors and retries are not: the daily count records requests, not cache rows."""
    cache = CvrCache(engine)
    with CvrClient(sim.url, SANDBOX_USER_AGENT, cache=cache, session=make_session(backoff=0)) as client:
        assert client.lookup(make_cvr(41)) is not None
        assert client.lookup(make_cvr(41)) is not None  # from the cache: no request
        sim.inject(429, retry_after=0)  # one refusal, then the answer: two requests for one lookup
        assert client.lookup(make_cvr(42)) is None
        sim.inject(500, times=10)  # 1 + 3 urllib3 retries, then the error: nothing cached, 4 requests spent
        with pytest.raises(ServiceUnavailable):
            client.lookup(make_cvr(43))
    assert sim.request_count == 7 and requests_today(engine) == 7
    status = quota_status(engine)
    assert (status.used_today, status.left) == (7, 43)
    record_requests(engine, 2)
    assert requests_today(engine) == 9
