"""Which outside services are configured, and a cheap "test connection" call per service."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lib.config import Settings, get_settings
from lib.cvr_client import CvrClient
from lib.economic_client import EconomicClient
from lib.errors import HubError
from lib.vtiger_client import VtigerClient

SERVICES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # service: (label, required settings, optional settings)
    "cvr": ("cvrapi.dk", ("CVR_API_URL", "CVR_USER_AGENT"), ("CVR_API_TOKEN", "CVR_CACHE_DAYS")),
    "economic": ("e-conomic", ("ECONOMIC_API_URL", "ECONOMIC_APP_SECRET_TOKEN", "ECONOMIC_AGREEMENT_GRANT_TOKEN"),
                 ()),
    "vtiger": ("vTiger", ("VTIGER_URL", "VTIGER_USERNAME", "VTIGER_ACCESS_KEY"), ("VTIGER_CVR_FIELD",)),
    "simplycrm": ("Simply-CRM", ("SIMPLYCRM_URL", "SIMPLYCRM_USERNAME", "SIMPLYCRM_ACCESS_KEY"),
                  ("SIMPLYCRM_CVR_FIELD",)),
}
# Any valid CVR does: "no company with this number" still proves URL, User-Agent and quota are fine.
PROBE_CVR = "13585628"


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


def _test_cvr(s: Settings) -> str:
    with CvrClient.from_settings(s) as client:  # no cache: this must reach the service
        company = client.lookup(PROBE_CVR)
    if company is None:
        return f"cvrapi.dk answered (no company with CVR {PROBE_CVR}); the User-Agent was accepted. Used 1 lookup."
    return f"cvrapi.dk answered: {company.name} ({company.cvr}). Used 1 lookup."


def _test_economic(s: Settings) -> str:
    with EconomicClient.from_settings(s) as client:
        info = client.self_info()
    company = (info.get("company") or {}).get("name") if isinstance(info.get("company"), dict) else None
    agreement = info.get("agreementNumber")
    return f"e-conomic accepted the tokens: agreement {agreement}" + (f" ({company})" if company else "")


def _crm_tester(source: str) -> Callable[[Settings], str]:
    def _test(s: Settings) -> str:
        with VtigerClient.from_settings(source, s) as client:
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
    """Make one cheap call to `service`; (True, what it answered) or (False, the exact problem)."""
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
