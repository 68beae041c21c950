"""Which outside services are configured, and a cheap "test connection" call per service.

A connection test never retries and never waits for a rate limit (doctor runs it from cron), and the cvrapi.dk
test spends none of the 50 free lookups a day: it checks the settings and that the host answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from lib.config import Settings, get_settings
from lib.cvr_client import SERVICE as CVR_SERVICE
from lib.cvr_client import check_user_agent
from lib.economic_client import SERVICE as ECONOMIC_SERVICE
from lib.economic_client import EconomicClient
from lib.errors import ConfigError, HubError, ServiceUnavailable
from lib.http_session import ServiceSession, make_session, send
from lib.vtiger_client import LABELS, VtigerClient

SERVICES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # service: (label, required settings, optional settings)
    "cvr": ("cvrapi.dk", ("CVR_API_URL", "CVR_USER_AGENT"), ("CVR_API_TOKEN", "CVR_CACHE_DAYS")),
    "economic": ("e-conomic", ("ECONOMIC_API_URL", "ECONOMIC_APP_SECRET_TOKEN", "ECONOMIC_AGREEMENT_GRANT_TOKEN"),
                 ()),
    "vtiger": ("vTiger", ("VTIGER_URL", "VTIGER_USERNAME", "VTIGER_ACCESS_KEY"), ("VTIGER_CVR_FIELD",)),
    "simplycrm": ("Simply-CRM", ("SIMPLYCRM_URL", "SIMPLYCRM_USERNAME", "SIMPLYCRM_ACCESS_KEY"),
                  ("SIMPLYCRM_CVR_FIELD",)),
}
PROBE_TIMEOUT = 10.0  # seconds; a connection test answers quickly or reports why not


@dataclass(frozen=True)
class IntegrationStatus:
    service: str
    label: str
    configured: bool
    missing: tuple[str, ...]
    settings: dict[str, str | None]  # setting name → value, secrets masked


def integration_status(settings: Settings | None = None) -> list[IntegrationStatus]:
    """One entry per service: configured or not, what is missing, its settings with secrets masked."""
    s = settings or get_settings()
    masked = s.masked()
    out = []
    for service, (label, required, optional) in SERVICES.items():
        missing = tuple(name for name in required if not masked.get(name))
        out.append(IntegrationStatus(service, label, not missing, missing,
                                     {name: masked.get(name) for name in (*required, *optional)}))
    return out


def probe_session(s: Settings, service: str, user_agent: str | None = None) -> ServiceSession:
    """A session for a connection test: no retries, no rate-limit waits, a short timeout."""
    return make_session(timeout=min(s.http_timeout_seconds, PROBE_TIMEOUT), retries=0, wait_budget=0,
                        service=service, user_agent=user_agent)


def _test_cvr(s: Settings) -> str:
    """Settings, then reachability of the host (its home page, not /api): no lookup is spent."""
    user_agent = check_user_agent(s.cvr_user_agent)
    if not s.cvr_api_url:
        raise ConfigError("CVR_API_URL is empty")
    parts = urlsplit(s.cvr_api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"CVR_API_URL {s.cvr_api_url!r} is not an http(s) URL")
    home = urlunsplit((parts.scheme, parts.netloc, "/", "", ""))
    with probe_session(s, CVR_SERVICE, user_agent) as session:
        response = send(session, "HEAD", home, service=CVR_SERVICE, allow_redirects=False)
    if response.status_code >= 500:
        raise ServiceUnavailable(f"{CVR_SERVICE}: {home} answered HTTP {response.status_code}")
    return (f"{CVR_SERVICE}: {home} answers (HTTP {response.status_code}); CVR_USER_AGENT has the required form. "
            "No lookup spent: the first lookup shows whether cvrapi.dk accepts the User-Agent.")


def _test_economic(s: Settings) -> str:
    with EconomicClient.from_settings(s, session=probe_session(s, ECONOMIC_SERVICE)) as client:
        info = client.self_info()
    company = (info.get("company") or {}).get("name") if isinstance(info.get("company"), dict) else None
    agreement = info.get("agreementNumber")
    return f"e-conomic accepted the tokens: agreement {agreement}" + (f" ({company})" if company else "")


def _crm_tester(source: str) -> Callable[[Settings], str]:
    def _test(s: Settings) -> str:
        with VtigerClient.from_settings(source, s, session=probe_session(s, LABELS[source])) as client:
            client.login()
            user = client.user_id
        return f"{SERVICES[source][0]}: logged in as {client.username} (user id {user})"

    return _test


TESTERS: dict[str, Callable[[Settings], str]] = {
    "cvr": _test_cvr,
    "economic": _test_economic,
    "vtiger": _crm_tester("vtiger"),
    "simplycrm": _crm_tester("simplycrm"),
}


def test_connection(service: str, settings: Settings | None = None) -> tuple[bool, str]:
    """Make one cheap call to `service` (no retries, no waiting; cvrapi.dk: no lookup spent); (True, what it
    answered) or (False, the exact problem)."""
    if service not in TESTERS:
        return False, f"unknown service {service!r}; one of {', '.join(TESTERS)}"
    s = settings or get_settings()
    try:
        return True, TESTERS[service](s)
    except HubError as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - the page shows any failure as a message, never a traceback
        return False, f"{SERVICES[service][0]}: unexpected failure ({type(exc).__name__})"


test_connection.__test__ = False  # not a pytest test, despite the name
