"""Client for cvrapi.dk (`GET /api?...&country=dk&version=6`): lookup by CVR number, search by name.

Error handling follows docs external-apis §1.4, where the HTTP status is unreliable: the JSON body
decides when there is one. QUOTA_EXCEEDED / BANNED / 403 / 429 raise ServiceQuotaError, INVALID_UA
raises ConfigError, NOT_FOUND / INVALID_VAT / 404 mean "no match". Answers are cached by query.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import requests

from lib.config import Settings, get_settings
from lib.cvr import validate_cvr
from lib.cvr_cache import FOUND, NOT_FOUND, CvrCache, query_key, record_requests
from lib.errors import ConfigError, ServiceError, ServiceQuotaError, ServiceUnavailable
from lib.http_session import json_or_none, label_session, limit_note, make_session, send

SERVICE = "cvrapi.dk"
NO_MATCH_CODES = {"NOT_FOUND", "INVALID_VAT"}
BLOCKED_CODES = {"QUOTA_EXCEEDED", "BANNED"}
UA_FORMAT = re.compile(r"\S.* - \S.* - \S.*")
GENERIC_UA = re.compile(r"^(python-requests|python-urllib|curl|wget|mozilla|httpie|mit projekt)", re.IGNORECASE)


@dataclass(frozen=True)
class CvrCompany:
    """One company as cvrapi.dk describes it (v6 object)."""

    cvr: str
    name: str
    address: str | None = None
    zipcode: str | None = None
    city: str | None = None
    phone: str | None = None
    email: str | None = None
    start_date: date | None = None
    end_date: date | None = None
    employees: str | None = None
    industry_code: int | None = None
    industry_desc: str | None = None
    company_code: int | None = None
    company_desc: str | None = None
    protected: bool = False
    owners: tuple[str, ...] = ()
    p_numbers: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def active(self) -> bool:
        """False once the company has ceased (an end date is set)."""
        return self.end_date is None


def parse_date(value: Any) -> date | None:
    """cvrapi's "29/12 - 1997" (also ISO dates); None when empty or unreadable."""
    if not value:
        return None
    text = str(value).strip()
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})\s*-\s*(\d{4})", text)
    try:
        if m:
            return date(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        return datetime.fromisoformat(text[:10]).date()
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_company(data: dict[str, Any]) -> CvrCompany | None:
    """The typed record for one v6 company object; None when it carries no usable CVR number."""
    vat = re.sub(r"\D", "", str(data.get("vat") or ""))
    if len(vat) != 8:
        return None
    owners = tuple(o["name"] for o in data.get("owners") or [] if isinstance(o, dict) and o.get("name"))
    units = tuple(str(u["pno"]) for u in data.get("productionunits") or [] if isinstance(u, dict) and u.get("pno"))
    return CvrCompany(
        cvr=vat,
        name=_text(data.get("name")) or "",
        address=_text(data.get("address")),
        zipcode=_text(data.get("zipcode")),
        city=_text(data.get("city")),
        phone=_text(data.get("phone")),
        email=_text(data.get("email")),
        start_date=parse_date(data.get("startdate")),
        end_date=parse_date(data.get("enddate")),
        employees=_text(data.get("employees")),
        industry_code=_int(data.get("industrycode")),
        industry_desc=_text(data.get("industrydesc")),
        company_code=_int(data.get("companycode")),
        company_desc=_text(data.get("companydesc")),
        protected=bool(data.get("protected")),
        owners=owners,
        p_numbers=units,
        raw=data,
    )


def companies_in(body: Any) -> list[CvrCompany]:
    """Every company in an answer: one v6 object, or a `{"hits": [...]}` list (seen in one client)."""
    if isinstance(body, dict) and isinstance(body.get("hits"), list):
        items = body["hits"]
    elif isinstance(body, dict):
        items = [body]
    else:
        items = []
    return [c for c in (parse_company(i) for i in items if isinstance(i, dict)) if c is not None]


def check_user_agent(user_agent: str | None) -> str:
    """The User-Agent, or ConfigError when it is missing, generic (cvrapi.dk bans those) or not Latin-1
    (an HTTP header cannot carry it: an en dash pasted from a word processor is the usual culprit)."""
    ua = (user_agent or "").strip()
    if not ua:
        raise ConfigError(
            'CVR_USER_AGENT is not set; cvrapi.dk requires "Company - project - contact", '
            'e.g. "Acme IT ApS - Kundedashboard - Jens Hansen jens@acme.dk"'
        )
    bad = next((i for i, ch in enumerate(ua) if ord(ch) > 0xFF), None)
    if bad is not None:
        ch = ua[bad]
        name = unicodedata.name(ch, f"U+{ord(ch):04X}")
        raise ConfigError(
            f"CVR_USER_AGENT has {ch!r} ({name}) at position {bad + 1}, which an HTTP header cannot carry "
            "(only Latin-1 characters can); type a plain hyphen '-' instead of a dash pasted from a word processor"
        )
    if GENERIC_UA.match(ua) or not UA_FORMAT.fullmatch(ua):
        raise ConfigError(
            f'CVR_USER_AGENT {ua!r} is too generic; cvrapi.dk requires "Company - project - contact", '
            'e.g. "Acme IT ApS - Kundedashboard - Jens Hansen jens@acme.dk"'
        )
    return ua


class CvrClient:
    """cvrapi.dk on one keep-alive session; `requests_made` counts calls that reached the service."""

    def __init__(
        self,
        base_url: str,
        user_agent: str | None,
        token: str | None = None,
        *,
        cache: CvrCache | None = None,
        timeout: float = 20.0,
        country: str = "dk",
        session: requests.Session | None = None,
    ) -> None:
        self.user_agent = check_user_agent(user_agent)
        if not base_url:
            raise ConfigError("CVR_API_URL is empty")
        self.base_url = base_url
        self._token = token or None
        self.cache = cache
        self.country = country
        self.session = session or make_session(timeout=timeout, user_agent=self.user_agent, service=SERVICE)
        label_session(self.session, SERVICE)
        self.session.headers["User-Agent"] = self.user_agent
        self.requests_made = 0

    @classmethod
    def from_settings(cls, settings: Settings | None = None, engine=None) -> CvrClient:
        """A client from CVR_* settings; with an engine, answers are cached for CVR_CACHE_DAYS."""
        s = settings or get_settings()
        cache = CvrCache(engine, s.cvr_cache_days) if engine is not None else None
        return cls(s.cvr_api_url, s.cvr_user_agent, s.cvr_api_token, cache=cache,
                   session=make_session(timeout=s.http_timeout_seconds, user_agent=check_user_agent(s.cvr_user_agent),
                                        wait_budget=s.http_wait_budget_seconds, service=SERVICE))

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> CvrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # public API
    def lookup(self, cvr: str) -> CvrCompany | None:
        """The company with this CVR number, or None ("no match"). Raises InvalidCVR for a bad number."""
        number = validate_cvr(cvr)
        found = self._ask("vat", number)
        return next((c for c in found if c.cvr == number), None)  # never another company's record

    def search_name(self, name: str) -> list[CvrCompany]:
        """Companies cvrapi.dk returns for a name (usually one; empty for no match)."""
        cleaned = " ".join(str(name).split())
        if not cleaned:
            return []
        return self._ask("name", cleaned)

    def search(self, text: str) -> list[CvrCompany]:
        """Free search across CVR number, P-number and name."""
        cleaned = " ".join(str(text).split())
        if not cleaned:
            return []
        return self._ask("search", cleaned)

    # internals
    def _ask(self, kind: str, value: str) -> list[CvrCompany]:
        key = query_key(kind, value)
        if self.cache is not None:
            entry = self.cache.get(key)
            if entry is not None:
                return companies_in(entry.response) if entry.status == FOUND else []
        body = self._call(kind, value)
        companies = companies_in(body)
        if self.cache is not None:
            self.cache.put(key, FOUND if companies else NOT_FOUND, body if companies else None)
        return companies

    def _call(self, kind: str, value: str) -> Any:
        params = {kind: value, "country": self.country, "version": "6", "format": "json"}
        if self._token:
            params["token"] = self._token
        self.requests_made += 1
        before = getattr(self.session, "sent", 0)
        try:
            response = send(self.session, "GET", self.base_url, service=SERVICE, secrets=[self._token], params=params)
        finally:
            if self.cache is not None:  # every request counts against the daily quota, answered or not
                record_requests(self.cache.engine, max(1, getattr(self.session, "sent", 0) - before))
        return classify(response, self.user_agent, limit_note(self.session))


def classify(response: requests.Response, user_agent: str = "", note: str = "") -> Any:
    """The JSON body of a match, None for "no match"; raises for every failure class."""
    body = json_or_none(response)
    status = response.status_code
    if isinstance(body, dict) and body.get("error"):
        code = str(body["error"]).strip().upper()
        detail = f": {body['message']}" if isinstance(body.get("message"), str) and body["message"] else ""
        if code in NO_MATCH_CODES:
            return None
        if code == "QUOTA_EXCEEDED":
            raise ServiceQuotaError(
                f"{SERVICE}: daily lookup quota exceeded (QUOTA_EXCEEDED){detail}; cvrapi.dk has also answered this "
                f'for a User-Agent not in the form "Company - project - contact" (CVR_USER_AGENT is {user_agent!r}), '
                "so check it; otherwise try again tomorrow or set CVR_API_TOKEN")
        if code == "BANNED":
            raise ServiceQuotaError(f"{SERVICE}: this IP address is banned (BANNED){detail}")
        if code == "INVALID_UA":
            raise ConfigError(f"{SERVICE} rejected CVR_USER_AGENT (INVALID_UA){detail}; "
                              'use "Company - project - contact name email"')
        if code == "INTERNAL_ERROR":
            raise ServiceUnavailable(f"{SERVICE}: internal error at the service (INTERNAL_ERROR){detail}")
        raise ServiceError(f"{SERVICE}: answered error {code}{detail}")
    if status == 404:
        return None
    if status == 429:
        raise ServiceQuotaError(f"{SERVICE}: rate limited (HTTP 429){note}")
    if status in (401, 403):
        raise ServiceQuotaError(f"{SERVICE}: access refused (HTTP {status}); the IP address may be blocked")
    if status >= 500:
        raise ServiceUnavailable(f"{SERVICE}: service error (HTTP {status}) after retries")
    if status == 200 and isinstance(body, dict):
        if isinstance(body.get("hits"), list) and not body["hits"]:
            return None
        if companies_in(body):
            return body
    raise ServiceError(f"{SERVICE}: unexpected answer (HTTP {status})")
