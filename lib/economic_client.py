"""Client for the e-conomic REST API (read-only): `/self` and every customer, paged by `nextPage`.

A page that times out is not asked again at the same size: the page size is halved (1000 → 500 → 250 →
125, the offset stays a whole number of pages) and the rest of the read keeps the smaller size. Read
timeouts are therefore not retried by the session; 429 is waited out within HTTP_WAIT_BUDGET_SECONDS.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from lib.config import Settings, get_settings
from lib.cvr import normalize_cvr
from lib.errors import ConfigError, ServiceAuthError, ServiceError, ServiceQuotaError, ServiceUnavailable
from lib.http_session import (
    ServiceNotFound,
    ServiceTimeout,
    json_or_none,
    label_session,
    limit_note,
    make_session,
    redact,
    send,
)

SERVICE = "e-conomic"
PAGE_SIZE = 1000
MIN_PAGE_SIZE = 125  # halving from 1000 stops here; each size divides the one before, so offsets stay pages
MAX_PAGES = 10_000  # a guard against a server that keeps answering with a nextPage


@dataclass(frozen=True)
class EconomicCustomer:
    """One e-conomic customer; `cvr` is the valid CVR in corporateIdentificationNumber, else None."""

    customer_number: int
    name: str
    corporate_identification_number: str | None = None
    cvr: str | None = None
    email: str | None = None
    address: str | None = None
    zip: str | None = None
    city: str | None = None
    country: str | None = None
    phone: str | None = None
    mobile_phone: str | None = None
    website: str | None = None
    currency: str | None = None
    barred: bool = False
    last_updated: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_customer(data: dict[str, Any]) -> EconomicCustomer:
    """The typed record; booleans left out of the answer read as false, as e-conomic omits `false`."""
    ci_number = _text(data.get("corporateIdentificationNumber"))
    return EconomicCustomer(
        customer_number=int(data["customerNumber"]),
        name=_text(data.get("name")) or "",
        corporate_identification_number=ci_number,
        cvr=normalize_cvr(ci_number),
        email=_text(data.get("email")),
        address=_text(data.get("address")),
        zip=_text(data.get("zip")),
        city=_text(data.get("city")),
        country=_text(data.get("country")),
        phone=_text(data.get("telephoneAndFaxNumber")),
        mobile_phone=_text(data.get("mobilePhone")),
        website=_text(data.get("website")),
        currency=_text(data.get("currency")),
        barred=bool(data.get("barred", False)),
        last_updated=_text(data.get("lastUpdated")),
        raw=data,
    )


def error_message(response: requests.Response) -> str:
    """One readable line from an e-conomic error body ({message, developerHint, errorCode, errors})."""
    body = json_or_none(response)
    status = response.status_code
    if not isinstance(body, dict):
        return f"HTTP {status}"
    parts = [str(body.get("message") or f"HTTP {status}").rstrip(".")]
    details = []
    for name, entry in (body.get("errors") or {}).items() if isinstance(body.get("errors"), dict) else []:
        for err in (entry or {}).get("errors", []) if isinstance(entry, dict) else []:
            if isinstance(err, dict) and err.get("message"):
                details.append(f"{name}: {err['message']}")
    if details:
        parts.append("; ".join(details))
    if body.get("developerHint"):
        parts.append(str(body["developerHint"]).rstrip("."))
    text = ". ".join(parts)
    if body.get("errorCode"):
        text += f" [{body['errorCode']}]"
    return text


class EconomicClient:
    """e-conomic REST on one keep-alive session. Missing tokens raise ConfigError before any request."""

    def __init__(
        self,
        base_url: str,
        app_secret_token: str | None,
        agreement_grant_token: str | None,
        *,
        timeout: float = 20.0,
        page_size: int = PAGE_SIZE,
        session: requests.Session | None = None,
    ) -> None:
        missing = [name for name, value in (("ECONOMIC_APP_SECRET_TOKEN", app_secret_token),
                                            ("ECONOMIC_AGREEMENT_GRANT_TOKEN", agreement_grant_token)) if not value]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} not set; e-conomic needs both tokens")
        if not base_url:
            raise ConfigError("ECONOMIC_API_URL is empty")
        self.base_url = base_url.rstrip("/")
        self._secrets = (app_secret_token, agreement_grant_token)
        self.page_size = page_size
        self.session = session or make_session(timeout=timeout, read_retries=0, service=SERVICE)
        label_session(self.session, SERVICE)
        self.session.headers.update({
            "X-AppSecretToken": app_secret_token,
            "X-AgreementGrantToken": agreement_grant_token,
            "Content-Type": "application/json",
            "Accept": "application/json",
        })
        self.requests_made = 0

    @classmethod
    def from_settings(cls, settings: Settings | None = None, *,
                      session: requests.Session | None = None) -> EconomicClient:
        s = settings or get_settings()
        return cls(s.economic_api_url, s.economic_app_secret_token, s.economic_agreement_grant_token,
                   session=session or make_session(timeout=s.http_timeout_seconds, read_retries=0,
                                        wait_budget=s.http_wait_budget_seconds, service=SERVICE))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> EconomicClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # public API
    def self_info(self) -> dict[str, Any]:
        """GET /self: the agreement the tokens belong to (the cheap token check)."""
        return self._get(f"{self.base_url}/self")

    def iter_customers(self) -> Iterator[EconomicCustomer]:
        """Every customer, page by page (pagesize 1000, following `nextPage`), each customerNumber once.

        A page that times out is asked again at half the size, down to MIN_PAGE_SIZE (see the module doc).
        """
        seen: set[int] = set()
        url: str | None = f"{self.base_url}/customers"
        params: dict[str, Any] | None = {"skippages": 0, "pagesize": self.page_size}
        size, offset, pages = self.page_size, 0, 0
        while url and pages < MAX_PAGES:
            try:
                body = self._get(url, params)
            except ServiceTimeout as exc:
                if size <= MIN_PAGE_SIZE or size % 2:
                    raise ServiceTimeout(f"{exc} even for {size} customers per page; raise HTTP_TIMEOUT_SECONDS "
                                         f"(now {self.session_timeout():g} s)") from None
                size //= 2
                self.page_size = size
                url, params = f"{self.base_url}/customers", {"skippages": offset // size, "pagesize": size}
                continue
            pages += 1
            for item in body.get("collection") or []:
                if not isinstance(item, dict) or item.get("customerNumber") is None:
                    continue
                customer = parse_customer(item)
                if customer.customer_number not in seen:
                    seen.add(customer.customer_number)
                    yield customer
            offset += size
            next_page = (body.get("pagination") or {}).get("nextPage")
            url, params = (self._same_origin(next_page), None) if next_page and next_page != url else (None, None)

    def list_customers(self) -> list[EconomicCustomer]:
        return list(self.iter_customers())

    def get_customer(self, customer_number: int) -> EconomicCustomer | None:
        """One customer by number, or None when e-conomic has no such customer."""
        try:
            return parse_customer(self._get(f"{self.base_url}/customers/{int(customer_number)}"))
        except ServiceNotFound:
            return None

    # internals
    def session_timeout(self) -> float:
        return float(getattr(self.session, "timeout", 0) or 0)

    def _same_origin(self, link: str) -> str:
        """Follow a link, but only to our own base URL: tokens are never sent to another host."""
        base, target = urlsplit(self.base_url), urlsplit(link)
        if (target.scheme, target.netloc) == (base.scheme, base.netloc):
            return link
        return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + target.path, target.query, ""))

    def _get(self, url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.requests_made += 1
        response = send(self.session, "GET", url, service=SERVICE, secrets=self._secrets, params=params)
        status = response.status_code
        if status == 200:
            body = json_or_none(response)
            if not isinstance(body, dict):
                raise ServiceError(f"{SERVICE}: the answer was not JSON (HTTP 200)")
            return body
        message = redact(error_message(response), self._secrets)
        if status in (401, 403):
            verb = "refused the tokens" if status == 401 else "denied access (the app's role lacks it)"
            raise ServiceAuthError(f"{SERVICE} {verb} (HTTP {status}): {message}")
        if status == 404:
            raise ServiceNotFound(f"{SERVICE}: not found (HTTP 404): {message}")
        if status == 429:
            raise ServiceQuotaError(f"{SERVICE}: rate limited (HTTP 429){limit_note(self.session)}: {message}")
        if status >= 500:
            raise ServiceUnavailable(f"{SERVICE}: service error (HTTP {status}) after retries"
                                     f"{limit_note(self.session)}: {message}")
        raise ServiceError(f"{SERVICE}: request refused (HTTP {status}): {message}")
