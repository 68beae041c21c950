"""Client for the vTiger webservice (`{URL}/webservice.php`), used for vTiger and for Simply-CRM.

getchallenge → login with md5(token + access key); one re-login when the session expires; VTQL
paged with `ORDER BY id LIMIT offset,100`. Rows the user may not see are dropped after the LIMIT, so a
short or even empty page is not the last while `count(*)` says more remain. Errors arrive as HTTP 200
with `success: false`. ACCESS_DENIED / RECORD_NOT_FOUND on one record (vTiger 8 answers ACCESS_DENIED for
a deleted record) is a RecordUnavailable (a RowError: skip that account, go on); only getchallenge/login
failures are authentication errors. Values are used as the server sends them: it already decodes HTML
entities, and decoding again would turn a stored "&amp;" into "&" (and write that back on update).
"""

from __future__ import annotations

import hashlib
import html
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from lib.config import Settings, get_settings
from lib.cvr import normalize_cvr
from lib.errors import ConfigError, RowError, ServiceAuthError, ServiceError, ServiceQuotaError, ServiceUnavailable
from lib.http_session import json_or_none, label_session, limit_note, make_session, redact, send

PAGE_SIZE = 100  # the webservice clamps LIMIT to 100
MAX_PAGES = 100_000
SESSION_CODES = {"INVALID_SESSIONID", "SESSION_EXPIRED", "SESSION_LEFT_IDLE"}
AUTH_CODES = {"INVALID_USER_CREDENTIALS", "AUTHENTICATION_FAILURE", "AUTHENTICATION_REQUIRED",
              "INVALID_AUTH_TOKEN", "ACCESSKEY_UNDEFINED", "ACCESS_DENIED"}
RECORD_CODES = {"RECORD_NOT_FOUND", "ACCESS_DENIED"}  # on an operation about one record: that record only
RECORD_OPERATIONS = {"retrieve", "update", "revise", "delete"}
NOT_A_REPLY = "NOT_A_WEBSERVICE_REPLY"  # a PHP error page instead of JSON (what real vTiger gives unknown ops)
UNSUPPORTED_CODES = {"UNKNOWN_OPERATION", "OPERATION_NOT_SUPPORTED", NOT_A_REPLY}
LABELS = {"vtiger": "vTiger", "simplycrm": "Simply-CRM"}


class VtigerError(ServiceError):
    """The webservice answered `success: false`; `code` is its error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class VtigerAuthError(ServiceAuthError):
    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class RecordUnavailable(RowError):
    """One record cannot be read or written (deleted, or not visible to this user): skip it, report it."""

    def __init__(self, message: str, code: str = "", *, key: str | None = None) -> None:
        super().__init__(message, key=key)
        self.code = code


@dataclass(frozen=True)
class CrmAccount:
    """One Accounts record; `cvr` is the valid CVR in the CVR field, `cvr_raw` what the field holds."""

    id: str
    name: str
    cvr_raw: str | None = None
    cvr: str | None = None
    email: str | None = None
    phone: str | None = None
    website: str | None = None
    street: str | None = None
    zip: str | None = None
    city: str | None = None
    country: str | None = None
    fields: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


def parse_error(error: Any) -> tuple[str, str]:
    """(code, message) from an error object, whichever names it uses: code/message, errorCode/errorMessage,
    errorType/errorMsg; a bare string is taken as the code."""
    if isinstance(error, str):
        return error, error
    if not isinstance(error, dict):
        return "UNKNOWN_ERROR", "the CRM reported an error without details"
    code = error.get("code") or error.get("errorCode") or error.get("errorType") or "UNKNOWN_ERROR"
    message = error.get("message") or error.get("errorMessage") or error.get("errorMsg") or str(code)
    return str(code), str(message)


def _blank_to_none(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def vtql_quote(value: str) -> str:
    """A VTQL string literal; quotes are dropped since the escape rule is unknown (docs §6)."""
    return "'" + str(value).replace("'", "").replace("\\", "") + "'"


class VtigerClient:
    """One CRM target on one keep-alive session. `name` is "vtiger" or "simplycrm" (used in messages).

    `supports_revise`: True = use `revise`; False = retrieve + full `update`; None = try `revise` and
    fall back (remembered) when the server answers UNKNOWN_OPERATION.
    """

    def __init__(
        self,
        base_url: str | None,
        username: str | None,
        access_key: str | None,
        *,
        name: str = "vtiger",
        cvr_field: str | None = None,
        supports_revise: bool | None = True,
        timeout: float = 20.0,
        session: requests.Session | None = None,
    ) -> None:
        prefix = name.upper()
        missing = [f"{prefix}_{n}" for n, v in (("URL", base_url), ("USERNAME", username),
                                                  ("ACCESS_KEY", access_key)) if not v]
        if missing:
            raise ConfigError(f"{', '.join(missing)} not set; {LABELS.get(name, name)} needs URL, user and access key")
        url = str(base_url).rstrip("/")
        self.endpoint = url if url.endswith("webservice.php") else f"{url}/webservice.php"
        self.name = name
        self.label = LABELS.get(name, name)
        self.username = str(username)
        self._access_key = str(access_key)
        self._configured_cvr_field = cvr_field or None
        self._cvr_field: str | None = None
        self._cvr_field_known = False
        self.supports_revise = supports_revise
        self.session = session or make_session(timeout=timeout)
        label_session(self.session, self.label)
        self.session_name: str | None = None
        self.user_id: str | None = None
        self.requests_made = 0
        self.logins = 0
        self.accounts_counted: int | None = None

    @classmethod
    def from_settings(cls, source: str = "vtiger", settings: Settings | None = None, *,
                      session: requests.Session | None = None) -> VtigerClient:
        """A client for `source` "vtiger" (revise on) or "simplycrm" (retrieve + update: revise is undocumented)."""
        if source not in LABELS:
            raise ConfigError(f"unknown CRM source {source!r}; use vtiger or simplycrm")
        s = settings or get_settings()
        return cls(
            getattr(s, f"{source}_url"), getattr(s, f"{source}_username"), getattr(s, f"{source}_access_key"),
            name=source, cvr_field=getattr(s, f"{source}_cvr_field"),
            supports_revise=True if source == "vtiger" else False,
            session=session or make_session(timeout=s.http_timeout_seconds, wait_budget=s.http_wait_budget_seconds,
                                            service=LABELS[source]),
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> VtigerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transport
    def _raw(self, method: str, operation: str, params: dict[str, Any]) -> Any:
        """One call; returns `result` or raises the error class for the code (no re-login here)."""
        data = {"operation": operation, **params}
        self.requests_made += 1
        if method == "GET":
            response = send(self.session, "GET", self.endpoint, service=self.label, secrets=[self._access_key],
                            params=data)
        else:
            response = send(self.session, "POST", self.endpoint, service=self.label, secrets=[self._access_key],
                            data=data)
        status = response.status_code
        if status in (401, 403):
            raise VtigerAuthError(f"{self.label}: access refused (HTTP {status})")
        if status == 429:
            raise ServiceQuotaError(f"{self.label}: rate limited (HTTP 429){limit_note(self.session)}")
        if status >= 500:
            raise ServiceUnavailable(f"{self.label}: service error (HTTP {status}) after retries"
                                     f"{limit_note(self.session)}")
        if status == 404:
            raise ServiceError(f"{self.label}: no webservice at {self.endpoint} (HTTP 404); check {self.name.upper()}_URL")
        body = json_or_none(response)
        if not isinstance(body, dict) or "success" not in body:
            raise VtigerError(f"{self.label}: unexpected answer to {operation} (HTTP {status}, not a webservice "
                              "reply)", NOT_A_REPLY)
        if body.get("success") in (True, "true", 1):
            return body.get("result")
        code, message = parse_error(body.get("error"))
        message = redact(message, [self._access_key])
        text = f"{self.label}: {operation} failed: {message} ({code})"
        record_id = _record_id(operation, params)
        if code in RECORD_CODES and record_id:
            raise RecordUnavailable(f"{self.label}: account {record_id} cannot be read or changed: it was deleted "
                                    f"or this user may not see it ({operation}: {message}, {code})", code,
                                    key=record_id)
        if code in AUTH_CODES:
            raise VtigerAuthError(text, code)
        raise VtigerError(text, code)

    def login(self) -> None:
        """getchallenge → login; stores the session name."""
        challenge = self._raw("GET", "getchallenge", {"username": self.username})
        token = (challenge or {}).get("token") if isinstance(challenge, dict) else None
        if not token:
            raise ServiceError(f"{self.label}: getchallenge returned no token")
        key = hashlib.md5((token + self._access_key).encode("utf-8")).hexdigest()
        result = self._raw("POST", "login", {"username": self.username, "accessKey": key})
        if not isinstance(result, dict) or not result.get("sessionName"):
            raise ServiceError(f"{self.label}: login returned no session")
        self.session_name = result["sessionName"]
        self.user_id = result.get("userId")
        self.logins += 1

    def call(self, method: str, operation: str, params: dict[str, Any] | None = None) -> Any:
        """An operation with the session; logs in first, and once more when the session has expired."""
        if self.session_name is None:
            self.login()
        try:
            return self._raw(method, operation, {**(params or {}), "sessionName": self.session_name})
        except VtigerError as exc:
            if exc.code not in SESSION_CODES:
                raise
        self.session_name = None
        self.login()
        try:
            return self._raw(method, operation, {**(params or {}), "sessionName": self.session_name})
        except VtigerError as exc:
            if exc.code in SESSION_CODES:
                raise VtigerAuthError(f"{self.label}: the session expired again right after logging in "
                                      f"({exc.code})", exc.code) from None
            raise

    # operations
    def query_page(self, vtql: str) -> list[dict[str, Any]]:
        """One VTQL query as given (must end with `;`), values as the server sent them."""
        result = self.call("GET", "query", {"query": vtql})
        if not isinstance(result, list):
            raise ServiceError(f"{self.label}: query returned {type(result).__name__}, not a list")
        return [r for r in result if isinstance(r, dict)]

    def count(self, select: str) -> int | None:
        """`count(*)` for `select` ("SELECT * FROM Accounts [WHERE ...]"); None when the CRM cannot count."""
        _, _, rest = select.strip().rstrip(";").partition(" FROM ")
        try:
            rows = self.query_page(f"SELECT count(*) FROM {rest};")
            return int(rows[0].get("count")) if rows else None
        except (VtigerError, TypeError, ValueError):
            return None

    def query_all(self, select: str, page_size: int = PAGE_SIZE,
                  expected: int | None = None) -> Iterator[dict[str, Any]]:
        """Every row of `select` ("SELECT * FROM Accounts [WHERE ...]", no ORDER BY/LIMIT/;), each id once.

        Paging stops at an empty page only once the offset has passed `expected` (the count): rows hidden by
        permissions are dropped after the LIMIT, so a whole page can come back empty while more remain.
        """
        seen: set[str] = set()
        offset = 0
        for _ in range(MAX_PAGES):
            rows = self.query_page(f"{select.rstrip().rstrip(';')} ORDER BY id LIMIT {offset},{page_size};")
            offset += page_size
            if not rows:
                if expected is not None and offset < expected:
                    continue
                return
            for row in rows:
                row_id = str(row.get("id", ""))
                if row_id and row_id in seen:
                    continue
                seen.add(row_id)
                yield row

    def describe(self, element_type: str = "Accounts") -> dict[str, Any]:
        result = self.call("GET", "describe", {"elementType": element_type})
        if not isinstance(result, dict):
            raise ServiceError(f"{self.label}: describe returned no description")
        return result

    def retrieve(self, record_id: str) -> dict[str, Any]:
        """The full record; RecordUnavailable when it was deleted or cannot be seen."""
        result = self.call("GET", "retrieve", {"id": record_id})
        if not isinstance(result, dict):
            raise ServiceError(f"{self.label}: retrieve returned no record")
        return result

    def cvr_field(self) -> str | None:
        """The Accounts field holding the CVR: *_CVR_FIELD, else the first whose label contains "CVR"."""
        if self._configured_cvr_field:
            return self._configured_cvr_field
        if not self._cvr_field_known:
            fields = self.describe("Accounts").get("fields") or []
            self._cvr_field = next(
                (f["name"] for f in fields
                 if isinstance(f, dict) and f.get("name") and "cvr" in html.unescape(str(f.get("label", ""))).casefold()),
                None,
            )
            self._cvr_field_known = True
        return self._cvr_field

    def to_account(self, record: dict[str, Any]) -> CrmAccount:
        cvr_field = self.cvr_field()
        raw_cvr = _blank_to_none(record.get(cvr_field)) if cvr_field else None
        return CrmAccount(
            id=str(record.get("id", "")),
            name=_blank_to_none(record.get("accountname")) or "",
            cvr_raw=raw_cvr,
            cvr=normalize_cvr(raw_cvr),
            email=_blank_to_none(record.get("email1")),
            phone=_blank_to_none(record.get("phone")),
            website=_blank_to_none(record.get("website")),
            street=_blank_to_none(record.get("bill_street")),
            zip=_blank_to_none(record.get("bill_code")),
            city=_blank_to_none(record.get("bill_city")),
            country=_blank_to_none(record.get("bill_country")),
            fields=dict(record),
        )

    def iter_accounts(self) -> Iterator[CrmAccount]:
        """Every account (all fields); `accounts_counted` is the CRM's count(*) (None if it cannot count)."""
        self.cvr_field()  # resolve before paging, so a describe failure stops us early
        self.accounts_counted = self.count("SELECT * FROM Accounts")
        for record in self.query_all("SELECT * FROM Accounts", expected=self.accounts_counted):
            yield self.to_account(record)

    def update_fields(self, record_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Change some fields of one record: `revise` where supported, else retrieve + full `update`."""
        values = {k: "" if v is None else str(v) for k, v in changes.items() if k != "id"}
        if self.supports_revise is not False:
            try:
                result = self.call("POST", "revise", {"element": json.dumps({**values, "id": record_id})})
                if self.supports_revise is None:
                    self.supports_revise = True
                return result if isinstance(result, dict) else {}
            except VtigerError as exc:
                if exc.code not in UNSUPPORTED_CODES or self.supports_revise is True:
                    raise
                self.supports_revise = False
        current = self.retrieve(record_id)
        current.update(values)
        current["id"] = record_id
        result = self.call("POST", "update", {"element": json.dumps(current)})
        return result if isinstance(result, dict) else {}


def _record_id(operation: str, params: dict[str, Any]) -> str | None:
    """The record an operation is about (retrieve/delete `id`, update/revise `element.id`), else None."""
    if operation not in RECORD_OPERATIONS:
        return None
    if params.get("id"):
        return str(params["id"])
    try:
        element = json.loads(params.get("element") or "{}")
    except ValueError:
        return None
    return str(element["id"]) if isinstance(element, dict) and element.get("id") else None
