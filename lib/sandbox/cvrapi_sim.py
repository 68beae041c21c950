"""A local cvrapi.dk (`GET /api`, version 6): one company per call, User-Agent rule, daily quota per IP.

Knobs for the [U] parts of the reference: `not_found_mode` ("200" → 200 + {"error":"NOT_FOUND"},
"404" → 404 with that body, "404-empty" → a bare 404), `error_status` (the HTTP status that carries
QUOTA_EXCEEDED / BANNED / INVALID_UA bodies; 200 by default), `error_message` (add a "message" field),
`hits_mode` (name/search answer `{"hits":[...]}` lists), `zipcode_as_int`.
"""

from __future__ import annotations

import re
from typing import Any

from lib.cvr import make_cvr
from lib.sandbox.base import Fault, SimRequest, SimResponse, Simulator

UA_PATTERN = re.compile(r".+ - .+ - .+")
FREE_QUOTA = 50


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


class CvrApiSimulator(Simulator):
    name = "cvrapi"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> None:
        super().__init__(host, port, verbose)
        self.companies: dict[str, dict[str, Any]] = {}
        self.quota = FREE_QUOTA  # lookups per IP before QUOTA_EXCEEDED
        self.used: dict[str, int] = {}
        self.tokens: set[str] = set()  # paid tokens: no quota
        self.banned = False
        self.not_found_mode = "200"
        self.error_status = 200
        self.error_message = False
        self.hits_mode = False
        self.zipcode_as_int = False

    @property
    def url(self) -> str:
        return f"{self.origin}/api"

    def add_company(
        self,
        cvr: str | None = None,
        name: str = "Eksempel ApS",
        *,
        seed: int | None = None,
        address: str = "Vestergade 1",
        zipcode: str = "8000",
        city: str = "Aarhus C",
        phone: str | None = None,
        email: str | None = None,
        startdate: str | None = "01/01 - 2010",
        enddate: str | None = None,
        industrycode: int = 620100,
        industrydesc: str = "Computerprogrammering",
        companycode: int = 80,
        companydesc: str = "Anpartsselskab",
        employees: str | None = "2-4",
        protected: bool = False,
        owners: list[str] | None = None,
        pno: int | None = None,
        creditbankrupt: bool = False,
        creditstatus: str | None = None,
    ) -> dict[str, Any]:
        """Register a company (CVR from `cvr`, else `make_cvr(seed)`); returns its v6 object."""
        if cvr is None:
            cvr = make_cvr(seed if seed is not None else len(self.companies) + 1)
        unit = {
            "pno": pno or 1000000000 + int(cvr) % 999999999, "main": True, "name": name, "address": address,
            "zipcode": zipcode, "city": city, "cityname": None, "protected": protected, "phone": phone,
            "email": email, "fax": None, "startdate": startdate, "enddate": enddate, "employees": None,
            "addressco": None, "industrycode": industrycode, "industrydesc": industrydesc,
        }
        company = {
            "vat": int(cvr), "name": name, "address": address, "zipcode": zipcode, "city": city,
            "cityname": None, "protected": protected, "phone": phone, "email": email, "fax": None,
            "startdate": startdate, "enddate": enddate, "employees": employees, "addressco": None,
            "industrycode": industrycode, "industrydesc": industrydesc, "companycode": companycode,
            "companydesc": companydesc, "creditstartdate": None, "creditbankrupt": creditbankrupt, "creditstatus": creditstatus,
            "owners": [{"name": o} for o in owners] if owners else None, "productionunits": [unit],
            "t": 100, "version": 6,
        }
        with self._lock:
            self.companies[cvr] = company
        return company

    def label(self, request: SimRequest) -> str:
        keys = [k for k in ("search", "vat", "name", "produ", "phone") if k in request.query]
        return keys[0] if keys else "api"

    def _error(self, code: str, status: int | None = None) -> SimResponse:
        body: dict[str, Any] = {"error": code}
        if self.error_message:
            body["message"] = {
                "QUOTA_EXCEEDED": "Quota exceeded. You have 50 free lookups per day.",
                "BANNED": "Your IP-address or IP-range has been banned.",
                "INVALID_UA": "Specify your project in the User-Agent.",
                "NOT_FOUND": "Not found",
                "INTERNAL_ERROR": "An error has occurred.",
            }.get(code, code)
        return SimResponse.json(self.error_status if status is None else status, body, ascii_only=True)

    def _not_found(self) -> SimResponse:
        if self.not_found_mode == "404-empty":
            return SimResponse(404, b"", {"Content-Type": "text/html; charset=utf-8"})
        return self._error("NOT_FOUND", 404 if self.not_found_mode == "404" else 200)

    def _render(self, company: dict[str, Any]) -> dict[str, Any]:
        out = dict(company)
        if self.zipcode_as_int and str(out.get("zipcode") or "").isdigit():
            out["zipcode"] = int(out["zipcode"])
        return out

    def _find(self, key: str, value: str) -> list[dict[str, Any]]:
        digits = re.sub(r"\D", "", value)
        companies = list(self.companies.values())
        if key == "vat":
            return [c for c in companies if str(c["vat"]) == digits]
        if key == "produ":
            return [c for c in companies if any(str(u["pno"]) == digits for u in c["productionunits"])]
        if key == "phone":
            return [c for c in companies if digits and re.sub(r"\D", "", c.get("phone") or "") == digits]
        wanted = _fold(value)
        exact = [c for c in companies if _fold(c["name"]) == wanted]
        partial = [c for c in companies if wanted and wanted in _fold(c["name"]) and c not in exact]
        found = exact + partial
        if key == "search" and digits and len(digits) in (8, 10):
            found = self._find("vat" if len(digits) == 8 else "produ", digits) + found
        return found

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path.rstrip("/") != "/api" or request.method not in ("GET", "HEAD"):
            return SimResponse.text(404, "<html><body>Not Found</body></html>")
        if not UA_PATTERN.fullmatch(request.header("User-Agent") or ""):
            return self._error("INVALID_UA")
        if self.banned:
            return self._error("BANNED")
        token = request.query.get("token")
        if not (token and token in self.tokens):
            used = self.used.get(request.client_ip, 0)
            if used >= self.quota:
                return self._error("QUOTA_EXCEEDED")
            self.used[request.client_ip] = used + 1
        keys = [k for k in ("search", "vat", "name", "produ", "phone") if k in request.query]
        if not keys:
            return self._error("INVALID_REQUEST", 200)
        key = keys[0]
        value = request.query[key]
        if key == "vat" and len(re.sub(r"\D", "", value)) != 8:
            return self._error("INVALID_VAT", 404 if self.not_found_mode.startswith("404") else 200)
        found = self._find(key, value)
        if not found:
            return self._not_found()
        if self.hits_mode and key in ("search", "name"):
            return SimResponse.json(200, {"hits": [self._render(c) for c in found]}, ascii_only=True)
        return SimResponse.json(200, self._render(found[0]), ascii_only=True)

    def fault_response(self, fault: Fault, request: SimRequest) -> SimResponse:
        if fault.status == 429:
            return self._error("QUOTA_EXCEEDED", 429)
        if fault.status >= 500:
            return SimResponse.json(fault.status, {"error": "INTERNAL_ERROR"}, ascii_only=True)
        return super().fault_response(fault, request)
