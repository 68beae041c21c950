"""A local e-conomic REST API: token headers, `/self`, `/customers` with skippages/pagesize and filters.

Follows the reference: both token headers on every call (`demo`/`demo` is GET-only), default page
size 20 and at most 1000, `nextPage` only while more pages remain, `false` booleans and nulls left
out of responses, errors as `{message, developerHint, errorCode, logId, httpStatusCode}`.
Knobs: `forbidden` (403 for the customers endpoints), `oversize_pagesize` ("error" or "clamp"),
`bucket_size` / `bucket_refill_per_second` (the token-bucket limit rolling out since Dec 2025: 429 without
Retry-After when empty; None = off), `slow_above_page_size` / `slow_seconds` (a page of more customers than
that answers only after `slow_seconds`, so a 1000-customer page can time out where a smaller one does not).
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from lib.sandbox.base import Fault, SimRequest, SimResponse, Simulator

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 1000
FILTER_FIELDS = (
    "address", "balance", "barred", "city", "corporateIdentificationNumber", "country", "creditLimit",
    "currency", "customerNumber", "ean", "email", "lastUpdated", "name", "publicEntryNumber",
    "telephoneAndFaxNumber", "vatNumber", "website", "zip",
)
OPERATORS = {
    "Equals": "$eq:", "Not equals": "$ne:", "Greater than": "$gt:", "Greater than or equal": "$gte:",
    "Less than": "$lt:", "Less than or equal": "$lte:", "Substring match": "$like:", "And also": "$and:",
    "Or else": "$or:", "In": "$in:", "Not in": "$nin:",
}


def make_customer(number: int, name: str, cvr: str | None = None, **fields: Any) -> dict[str, Any]:
    """A customer in e-conomic's wire shape (the simulator fills `self` links when it answers)."""
    customer: dict[str, Any] = {
        "customerNumber": number, "name": name, "currency": "DKK", "balance": 0.0, "dueAmount": 0.0,
        "creditLimit": 0, "barred": False, "country": "Danmark", "lastUpdated": "2026-05-04T08:12:33Z",
        "customerGroup": {"customerGroupNumber": 1}, "paymentTerms": {"paymentTermsNumber": 3},
        "vatZone": {"vatZoneNumber": 1},
    }
    if cvr is not None:
        customer["corporateIdentificationNumber"] = cvr
    customer.update(fields)
    return customer


class _BadFilter(ValueError):
    pass


def _unescape(value: str) -> str:
    return re.sub(r"\$([$()*,\[\]])", r"\1", value)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside parentheses (escaped `$(` / `$)` do not count)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        if text.startswith("$$", i) or text.startswith("$(", i) or text.startswith("$)", i):
            i += 2
            continue
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _compare(actual: Any, op: str, raw: str) -> bool:
    if op in ("in", "nin"):
        if not (raw.startswith("[") and raw.endswith("]")):
            raise _BadFilter(raw)
        items = [x.strip() for x in raw[1:-1].split(",") if x.strip()]
        if len(items) > 200 or not all(re.fullmatch(r"-?\d+(\.\d+)?", x) for x in items):
            raise _BadFilter(raw)
        hit = actual is not None and float(actual) in {float(x) for x in items}
        return hit if op == "in" else not hit
    if raw == "$null:":
        return actual is None if op == "eq" else actual is not None
    value = _unescape(raw)
    if isinstance(actual, bool) or value.lower() in ("true", "false"):
        actual_text, value = str(bool(actual)).lower(), value.lower()
    else:
        actual_text = "" if actual is None else str(actual)
    if op == "like":
        pattern = re.escape(value.casefold()).replace(r"\*", ".*")
        if "*" not in value:
            pattern = f".*{pattern}.*"
        return re.fullmatch(pattern, actual_text.casefold(), re.DOTALL) is not None
    if isinstance(actual, int | float) and not isinstance(actual, bool):
        try:
            a, b = float(actual), float(value)
        except ValueError:
            raise _BadFilter(raw) from None
    else:
        a, b = actual_text.casefold(), value.casefold()
    return {"eq": a == b, "ne": a != b, "gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _matches(customer: dict[str, Any], expression: str) -> bool:
    expression = expression.strip()
    ors = _split_top(expression, "$or:")
    if len(ors) > 1:
        return any(_matches(customer, part) for part in ors)
    ands = _split_top(expression, "$and:")
    if len(ands) > 1:
        return all(_matches(customer, part) for part in ands)
    if expression.startswith("(") and expression.endswith(")"):
        return _matches(customer, expression[1:-1])
    m = re.fullmatch(r"([A-Za-z.]+)\$(eq|ne|gt|gte|lt|lte|like|in|nin):(.*)", expression, re.DOTALL)
    if not m or m.group(1) not in FILTER_FIELDS:
        raise _BadFilter(expression)
    return _compare(customer.get(m.group(1)), m.group(2), m.group(3))


class EconomicSimulator(Simulator):
    name = "economic"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        app_secret_token: str = "sandbox-app-secret",
        agreement_grant_token: str = "sandbox-agreement-grant",
    ) -> None:
        super().__init__(host, port, verbose)
        self.app_secret_token = app_secret_token
        self.agreement_grant_token = agreement_grant_token
        self.customers: list[dict[str, Any]] = []
        self.forbidden = False
        self.oversize_pagesize = "error"
        self.company_name = "BMC Sandbox ApS"
        self.bucket_size: int | None = None
        self.bucket_refill_per_second = 1.0
        self.slow_above_page_size: int | None = None
        self.slow_seconds = 0.0
        self.rate_limited = 0  # 429s answered by the bucket
        self.clock = time.monotonic  # the bucket's time source (tests share a fake one with the client)
        self._tokens = 0.0
        self._refilled = 0.0

    def _take_token(self) -> bool:
        if self.bucket_size is None:
            return True
        now = self.clock()
        if not self._refilled:
            self._tokens, self._refilled = float(self.bucket_size), now
        self._tokens = min(float(self.bucket_size), self._tokens + (now - self._refilled) * self.bucket_refill_per_second)
        self._refilled = now
        if self._tokens < 1:
            self.rate_limited += 1
            return False
        self._tokens -= 1
        return True

    def label(self, request: SimRequest) -> str:
        if request.path.startswith("/customers/"):
            return "/customers/{n}"
        return request.path

    # envelopes
    def _error(self, status: int, message: str, hint: str = "", code: str | None = None, **extra: Any):
        body: dict[str, Any] = {"message": message}
        if hint:
            body["developerHint"] = hint
        if code:
            body["errorCode"] = code
        body.update(extra)
        body["logId"] = str(uuid.uuid4())
        body["httpStatusCode"] = status
        body["logTime"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return SimResponse.json(status, body)

    def _render(self, customer: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in customer.items() if v is not None and v is not False}
        number = customer["customerNumber"]
        base = self.origin
        for ref, key, path in (
            ("customerGroup", "customerGroupNumber", "customer-groups"),
            ("paymentTerms", "paymentTermsNumber", "payment-terms"),
            ("vatZone", "vatZoneNumber", "vat-zones"),
        ):
            if isinstance(out.get(ref), dict) and key in out[ref]:
                out[ref] = {**out[ref], "self": f"{base}/{path}/{out[ref][key]}"}
        out["invoices"] = {
            "drafts": f"{base}/customers/{number}/invoices/drafts",
            "booked": f"{base}/customers/{number}/invoices/booked",
            "self": f"{base}/customers/{number}/invoices",
        }
        out["self"] = f"{base}/customers/{number}"
        return out

    def _auth(self, request: SimRequest) -> SimResponse | None:
        secret = request.header("X-AppSecretToken")
        grant = request.header("X-AgreementGrantToken")
        demo = request.query.get("demo") == "true" or (
            (secret or "").lower() == "demo" and (grant or "").lower() == "demo"
        )
        if demo:
            if request.method != "GET":
                return self._error(403, "The demo agreement is read-only.", "Use your own agreement to write.",
                                   "E00400")
            return None
        if not secret or not grant:
            missing = "X-AppSecretToken" if not secret else "X-AgreementGrantToken"
            return self._error(401, f"Missing header {missing}.",
                               "Supply both X-AppSecretToken and X-AgreementGrantToken. "
                               f"Try the demo: {self.origin}{request.path}?demo=true", "E00500")
        if secret != self.app_secret_token:
            return self._error(401, "AppSecretToken not recognised.",
                               "Check the X-AppSecretToken header.", "E02200")
        if grant != self.agreement_grant_token:
            return self._error(401, "AppSecretToken does not correspond to the token.",
                               "The agreement grant was issued to another app, or revoked.", "E02250")
        return None

    def handle(self, request: SimRequest) -> SimResponse:
        if not self._take_token():
            return self._error(429, "Too many requests.", "The rate limit is exceeded; slow down.", "E00429")
        refused = self._auth(request)
        if refused is not None:
            return refused
        path = request.path.rstrip("/") or "/"
        if path == "/self" and request.method == "GET":
            return SimResponse.json(200, {
                "agreementNumber": 123456, "agreementType": {"agreementTypeNumber": 1, "name": "Sandbox"},
                "company": {"name": self.company_name, "companyIdentificationNumber": "13585628"},
                "userName": "sandbox", "self": f"{self.origin}/self",
            })
        if path == "/customers" or path.startswith("/customers/"):
            if self.forbidden:
                return self._error(403, "Access denied.",
                                   "The app's role does not give access to customers.", "E01100")
            if request.method != "GET":
                return self._error(405, "Method not allowed.", "The sandbox serves GET only.")
            if path == "/customers":
                return self._collection(request)
            number = path.split("/")[2]
            found = next((c for c in self.customers if str(c["customerNumber"]) == number), None)
            if found is None:
                return self._error(404, "Customer not found.", f"No customer with number {number}.", "E07000")
            return SimResponse.json(200, self._render(found))
        return self._error(404, "Resource not found.", "See GET / for the resources.")

    def _link(self, skip: int, size: int, extra: dict[str, str]) -> str:
        return f"{self.origin}/customers?" + urlencode({"skippages": skip, "pagesize": size, **extra})

    def _collection(self, request: SimRequest) -> SimResponse:
        try:
            skip = int(request.query.get("skippages", "0"))
            size = int(request.query.get("pagesize", str(DEFAULT_PAGE_SIZE)))
        except ValueError:
            return self._error(400, "Invalid paging.", "skippages and pagesize must be whole numbers.")
        if skip < 0 or size < 1:
            return self._error(400, "Invalid paging.", "skippages must be >= 0 and pagesize >= 1.")
        if size > MAX_PAGE_SIZE:
            if self.oversize_pagesize == "error":
                return self._error(400, "Page size too large.", f"maxPageSizeAllowed is {MAX_PAGE_SIZE}.")
            size = MAX_PAGE_SIZE
        rows = list(self.customers)
        extra: dict[str, str] = {}
        flt = request.query.get("filter")
        if flt:
            extra["filter"] = flt
            try:
                rows = [c for c in rows if _matches(c, flt)]
            except _BadFilter:
                body = {
                    "allowedFilteringFields": list(FILTER_FIELDS), "allowedFilteringOperators": OPERATORS,
                    "escapeCharacters": {"$": "$$", "(": "$(", ")": "$)", "*": "$*", ",": "$,", "[": "$[",
                                         "]": "$]"},
                    "wildcard": "*", "nullValue": "$null:", "message": "Could not parse query string filter.",
                    "developerHint": "Filtering on collections can be done using the querystring parameter "
                                     "'filter'. See the documentation.",
                    "logId": str(uuid.uuid4()), "httpStatusCode": 400,
                }
                return SimResponse.json(400, body)
        sort = request.query.get("sort")
        if sort:
            extra["sort"] = sort
            for key in reversed(sort.split(",")):
                desc = key.startswith("-")
                field = key.lstrip("-~")
                rows.sort(key=lambda c, f=field: (c.get(f) is None, str(c.get(f)).casefold()
                                                  if isinstance(c.get(f), str) else c.get(f) or 0), reverse=desc)
        total = len(rows)
        last = max((total - 1) // size, 0)
        page = rows[skip * size:(skip + 1) * size]
        slow = self.slow_above_page_size is not None and len(page) > self.slow_above_page_size
        delay = self.slow_seconds if slow else 0.0
        pagination: dict[str, Any] = {
            "maxPageSizeAllowed": MAX_PAGE_SIZE, "skipPages": skip, "pageSize": size, "results": total,
            "resultsWithoutFilter": len(self.customers), "firstPage": self._link(0, size, extra),
        }
        if skip > 0:
            pagination["previousPage"] = self._link(min(skip - 1, last), size, extra)
        if skip < last:
            pagination["nextPage"] = self._link(skip + 1, size, extra)
        pagination["lastPage"] = self._link(last, size, extra)
        self_link = self._link(skip, size, extra) if request.query else f"{self.origin}/customers"
        response = SimResponse.json(200, {
            "collection": [self._render(c) for c in page],
            "pagination": pagination,
            "metaData": {"create": {"description": "Create a new customer", "href": f"{self.origin}/customers",
                                    "httpMethod": "post"}},
            "self": self_link,
        })
        response.delay = delay
        return response

    def fault_response(self, fault: Fault, request: SimRequest) -> SimResponse:
        if fault.status == 429:
            return self._error(429, "Too many requests.", "Slow down; see the Retry-After header.", "E00429")
        if fault.status >= 500:
            return self._error(fault.status, "An error occurred.", "Try again later.")
        return self._error(fault.status, "Request refused.")
