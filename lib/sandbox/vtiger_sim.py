"""A local vTiger webservice (`/webservice.php`), also serving as Simply-CRM (`mode="simply"`).

Faithful to the reference: HTTP 200 for every answer with `{"success": ..., "result" | "error"}`,
getchallenge → login with md5(token + accessKey), GET operations read only query parameters and
POST operations only the form body, a VTQL subset (mandatory `;`, LIMIT clamped to 100, no LIMIT
means 100), every value a string, the CVR in a custom `cf_NNN` field found via `describe`.
Knobs: `expire_session_after_queries` / `expiry_code`, `hidden_ids` (rows dropped after the LIMIT,
as permission filtering does; `count(*)` still counts them), `error_style` ("code", "errorCode" or
"errorType" field names), `entity_encode` (HTML-encode output values, as some forks do), `challenge_ttl`,
`row_cap`, `mode` ("vtiger"/"simply"), `clock` (the flood-control window's time source).
As a real vTiger 8.2 does (external-apis §4.4b): a deleted or unknown record answers `missing_record_code`
("ACCESS_DENIED"; "RECORD_NOT_FOUND" for older installs); an unknown operation answers a PHP error page,
not JSON (`unknown_operation="json"` gives the documented UNKNOWN_OPERATION envelope); values are returned as
stored (decoded once: a stored "&amp;" stays "&amp;"); getchallenge for an unknown user is ACCESS_DENIED.
As vTiger Cloud does (§4.6): `flood_limit` requests per `flood_window` seconds (None = no limit, as
self-hosted), answered with X-FloodControl-* headers on every reply (`flood_headers=False`: a bare 429) and
HTTP 429 without Retry-After once the window is used up; `daily_limit` adds the rolling daily limit with
X-RateLimit-DailyLimit / X-RateLimit-Remaining.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import re
import secrets
import time
from typing import Any

from lib.sandbox.base import Fault, SimRequest, SimResponse, Simulator

PHP_ERROR = ("<br />\n<b>Fatal error</b>:  Uncaught Exception: Unknown operation requested in "
             "/var/www/html/include/Webservices/OperationManager.php:72\nStack trace:\n#0 "
             "/var/www/html/webservice.php(88): OperationManager->__construct()\n#1 {main}\n  thrown in "
             "<b>/var/www/html/include/Webservices/OperationManager.php</b> on line <b>72</b><br />\n")

GET_OPERATIONS = {"getchallenge", "query", "retrieve", "describe", "listtypes"}
POST_OPERATIONS = {"login", "create", "update", "revise", "delete", "logout", "extendsession"}
PRELOGIN = {"getchallenge", "login", "extendsession"}
ACCOUNT_PREFIX = "11"
USER_ID = "19x1"
ACCOUNT_FIELDS = (
    ("accountname", "Organization Name", True, "string"), ("account_no", "Organization Number", False, "string"),
    ("phone", "Phone", False, "phone"), ("otherphone", "Other Phone", False, "phone"),
    ("fax", "Fax", False, "phone"), ("website", "Website", False, "url"), ("email1", "Email", False, "email"),
    ("email2", "Other Email", False, "email"), ("tickersymbol", "Ticker Symbol", False, "string"),
    ("account_id", "Member Of", False, "reference"), ("employees", "Employees", False, "integer"),
    ("ownership", "Ownership", False, "string"), ("rating", "Rating", False, "picklist"),
    ("industry", "industry", False, "picklist"), ("siccode", "SIC Code", False, "string"),
    ("accounttype", "Type", False, "picklist"), ("annual_revenue", "Annual Revenue", False, "currency"),
    ("emailoptout", "Email Opt Out", False, "boolean"), ("notify_owner", "Notify Owner", False, "boolean"),
    ("assigned_user_id", "Assigned To", True, "owner"), ("createdtime", "Created Time", False, "datetime"),
    ("modifiedtime", "Modified Time", False, "datetime"), ("modifiedby", "Last Modified By", False, "reference"),
    ("bill_street", "Billing Address", False, "text"), ("bill_city", "Billing City", False, "string"),
    ("bill_state", "Billing State", False, "string"), ("bill_code", "Billing Code", False, "string"),
    ("bill_country", "Billing Country", False, "string"), ("bill_pobox", "Billing Po Box", False, "string"),
    ("ship_street", "Shipping Address", False, "text"), ("ship_city", "Shipping City", False, "string"),
    ("ship_state", "Shipping State", False, "string"), ("ship_code", "Shipping Code", False, "string"),
    ("ship_country", "Shipping Country", False, "string"), ("ship_pobox", "Shipping Po Box", False, "string"),
    ("description", "Description", False, "text"),
)
MESSAGES = {
    "INVALID_SESSIONID": "Session Identifier provided is Invalid",
    "SESSION_EXPIRED": "Session expired",
    "SESSION_LEFT_IDLE": "Session has been left idle",
    "AUTHENTICATION_REQUIRED": "Authencation required",
    "INVALID_USER_CREDENTIALS": "Invalid username or password",
    "INVALID_AUTH_TOKEN": "Specified token is invalid or expired",
    "RECORD_NOT_FOUND": "Record you are trying to access is not found",
    "UNKNOWN_OPERATION": "Unknown operation requested",
    "QUERY_SYNTAX_ERROR": "Parsing failed",
    "MANDATORY_FIELDS_MISSING": "Mandatory fields not present",
    "INVALID_ID_ATTRIBUTE": "Id specified is incorrect",
    "ACCESS_DENIED": "Permission to perform the operation is denied",
    "INTERNAL_SERVER_ERROR": "Unknown Error while processing request",
}


def make_account(crm_id: int, name: str, cvr: str = "", cvr_field: str = "cf_853", **fields: Any) -> dict[str, str]:
    """An Accounts record as the webservice stores it: every standard field, all values strings."""
    record = {f[0]: "" for f in ACCOUNT_FIELDS}
    record.update({
        "accountname": name, "account_no": f"ACC{crm_id}", "employees": "0", "annual_revenue": "0.00000000",
        "emailoptout": "0", "notify_owner": "0", "assigned_user_id": USER_ID, "modifiedby": USER_ID,
        "createdtime": "2025-11-03 09:15:22", "modifiedtime": "2026-05-04 08:12:33", "bill_country": "Danmark",
        "accounttype": "Customer",
    })
    if cvr_field:
        record[cvr_field] = cvr
    record.update({k: "" if v is None else str(v) for k, v in fields.items()})
    record["id"] = f"{ACCOUNT_PREFIX}x{crm_id}"
    return record


class VtqlError(Exception):
    def __init__(self, code: str, message: str | None = None) -> None:
        super().__init__(message or MESSAGES.get(code, code))
        self.code = code


_TOKEN = re.compile(r"\s*(?:('(?:[^'\\]|\\.)*')|(\d+(?:\.\d+)?)|(count\(\*\))|(<=|>=|!=|<>|[=<>*(),;])|([A-Za-z_][\w.]*))",
                    re.IGNORECASE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise VtqlError("QUERY_SYNTAX_ERROR")
        pos = m.end()
        if m.group(1) is not None:
            out.append(("str", m.group(1)[1:-1].replace("\\'", "'")))
        elif m.group(2) is not None:
            out.append(("num", m.group(2)))
        elif m.group(3) is not None:
            out.append(("count", "count(*)"))
        elif m.group(4) is not None:
            out.append(("sym", m.group(4)))
        else:
            out.append(("word", m.group(5)))
    return out


def parse_vtql(text: str) -> dict[str, Any]:
    """Parse the supported VTQL subset into {columns, module, where, order, offset, limit}."""
    toks = _tokens(text)
    pos = 0

    def peek(offset: int = 0) -> tuple[str, str]:
        return toks[pos + offset] if pos + offset < len(toks) else ("eof", "")

    def word(expected: str | None = None) -> str:
        nonlocal pos
        kind, value = peek()
        if kind != "word" or (expected and value.upper() != expected):
            raise VtqlError("QUERY_SYNTAX_ERROR")
        pos += 1
        return value

    def sym(expected: str) -> None:
        nonlocal pos
        if peek() != ("sym", expected):
            raise VtqlError("QUERY_SYNTAX_ERROR")
        pos += 1

    def is_kw(value: str) -> bool:
        return peek()[0] == "word" and peek()[1].upper() == value

    word("SELECT")
    columns: list[str] | str
    if peek() == ("sym", "*"):
        pos += 1
        columns = "*"
    elif peek()[0] == "count":
        pos += 1
        columns = "count"
    else:
        columns = [word()]
        while peek() == ("sym", ","):
            pos += 1
            columns.append(word())
    word("FROM")
    module = word()
    where: list[tuple[str, tuple[str, str, Any]]] = []
    if is_kw("WHERE"):
        pos += 1
        joiner = "AND"
        while True:
            column = word()
            kind, op = peek()
            if kind == "word" and op.upper() in ("LIKE", "IN"):
                op = op.upper()
            elif kind != "sym" or op not in ("=", "<", ">", "<=", ">=", "!=", "<>"):
                raise VtqlError("QUERY_SYNTAX_ERROR")
            pos += 1
            if op == "IN":
                sym("(")
                values = []
                while True:
                    kind, value = peek()
                    if kind not in ("str", "num"):
                        raise VtqlError("QUERY_SYNTAX_ERROR")
                    values.append(value)
                    pos += 1
                    if peek() == ("sym", ","):
                        pos += 1
                        continue
                    sym(")")
                    break
                operand: Any = values
            else:
                kind, operand = peek()
                if kind not in ("str", "num"):
                    raise VtqlError("QUERY_SYNTAX_ERROR")
                pos += 1
            where.append((joiner, (column, op, operand)))
            if is_kw("AND") or is_kw("OR"):
                joiner = peek()[1].upper()
                pos += 1
                continue
            break
    order: list[str] = []
    descending = False
    if is_kw("ORDER"):
        pos += 1
        word("BY")
        order.append(word())
        while peek() == ("sym", ","):
            pos += 1
            order.append(word())
        if is_kw("ASC") or is_kw("DESC"):
            descending = peek()[1].upper() == "DESC"
            pos += 1
    offset, limit = 0, None
    if is_kw("LIMIT"):
        pos += 1
        kind, first = peek()
        if kind != "num":
            raise VtqlError("QUERY_SYNTAX_ERROR")
        pos += 1
        if peek() == ("sym", ","):
            pos += 1
            kind, second = peek()
            if kind != "num":
                raise VtqlError("QUERY_SYNTAX_ERROR")
            pos += 1
            offset, limit = int(first), int(second)
        else:
            limit = int(first)
    sym(";")  # the trailing semicolon is mandatory
    if peek()[0] != "eof":
        raise VtqlError("QUERY_SYNTAX_ERROR")
    return {"columns": columns, "module": module, "where": where, "order": order, "descending": descending,
            "offset": offset, "limit": limit}


@functools.lru_cache(maxsize=65536)  # paging sorts every row on each query: 5,000 accounts stay fast
def _sort_key(value: str) -> tuple:
    m = re.fullmatch(r"(\d+)x(\d+)", value)
    if m:
        return (0, int(m.group(1)), int(m.group(2)), "")
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return (1, float(value), 0, "")
    return (2, 0, 0, value.casefold())


def _condition(record: dict[str, str], column: str, op: str, operand: Any) -> bool:
    actual = record.get(column, "")
    if op == "IN":
        return actual in [str(v) for v in operand]
    if op == "LIKE":
        pattern = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in str(operand))
        return re.fullmatch(pattern, actual, re.IGNORECASE | re.DOTALL) is not None
    a, b = _sort_key(actual), _sort_key(str(operand))
    if op == "=":
        return actual.casefold() == str(operand).casefold()
    if op in ("!=", "<>"):
        return actual.casefold() != str(operand).casefold()
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


class VtigerSimulator(Simulator):
    name = "vtiger"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
        *,
        mode: str = "vtiger",
        username: str = "admin",
        access_key: str = "sandboxAccessKey123",
    ) -> None:
        super().__init__(host, port, verbose)
        self.name = "simplycrm" if mode == "simply" else "vtiger"
        self.mode = mode
        self.users: dict[str, str] = {username: access_key}
        self.accounts: list[dict[str, str]] = []
        self.cvr_field: str | None = "cf_853"
        self.cvr_label = "CVR-nummer"
        self.challenge_ttl = 300
        self.row_cap = 100
        self.expire_session_after_queries: int | None = None
        self.expiry_code = "INVALID_SESSIONID"
        self.hidden_ids: set[str] = set()
        self.error_style = "code"
        self.entity_encode = False
        self.missing_record_code = "ACCESS_DENIED"
        self.unknown_operation = "php"
        self.flood_limit: int | None = None
        self.flood_window = 60.0
        self.flood_headers = True
        self.daily_limit: int | None = None  # vTiger Cloud's rolling 24 h limit (X-RateLimit-*), None = off
        self.daily_used = 0
        self.flood_refused = 0  # 429s answered
        self.clock = time.monotonic  # the flood-control window's clock (tests share a fake one with the client)
        self._flood_start = 0.0
        self._flood_used = 0
        self.challenges: dict[str, tuple[str, float]] = {}  # username -> (token, expires)
        self.sessions: dict[str, dict[str, Any]] = {}
        self._expired: set[str] = set()  # session names that expired, so they get `expiry_code`
        self._next_id = 90000

    @property
    def url(self) -> str:
        """The CRM base URL (clients call {url}/webservice.php)."""
        return self.origin

    @property
    def endpoint(self) -> str:
        return f"{self.origin}/webservice.php"

    @property
    def username(self) -> str:
        return next(iter(self.users))

    @property
    def access_key(self) -> str:
        return self.users[self.username]

    @property
    def revise_supported(self) -> bool:
        return self.mode != "simply"

    def label(self, request: SimRequest) -> str:
        return (request.query.get("operation") or request.form.get("operation") or "").lower() or request.path

    def expire_sessions(self) -> None:
        """Invalidate every session now (the next call with one gets `expiry_code`)."""
        self._expired.update(self.sessions)
        self.sessions.clear()

    # envelopes
    def _ok(self, result: Any) -> SimResponse:
        return SimResponse.json(200, {"success": True, "result": result})

    def _fail(self, code: str, message: str | None = None) -> SimResponse:
        message = message or MESSAGES.get(code, code)
        names = {"code": ("code", "message"), "errorCode": ("errorCode", "errorMessage"),
                 "errorType": ("errorType", "errorMsg")}[self.error_style]
        return SimResponse.json(200, {"success": False, "error": {names[0]: code, names[1]: message}})

    def _out(self, record: dict[str, str], columns: list[str] | str = "*") -> dict[str, str]:
        keys = list(record) if columns == "*" else [*columns, "id"]
        out = {k: str(record.get(k, "")) for k in keys}
        if self.entity_encode:
            out = {k: html.escape(v, quote=True) for k, v in out.items()}
        return out

    def _find(self, record_id: str) -> dict[str, str] | None:
        return next((a for a in self.accounts if a.get("id") == record_id), None)

    def handle(self, request: SimRequest) -> SimResponse:
        if self.daily_limit is not None:
            if self.daily_used >= self.daily_limit:
                self.flood_refused += 1
                response = SimResponse.json(429, {"success": False, "error": {
                    "code": "TOO_MANY_REQUESTS", "message": "Daily API limit exceeded"}})
            else:
                self.daily_used += 1
                response = self._flood(request)
            response.headers.update({"X-RateLimit-DailyLimit": str(self.daily_limit),
                                     "X-RateLimit-Remaining": str(self.daily_limit - self.daily_used)})
            return response
        return self._flood(request)

    def _flood(self, request: SimRequest) -> SimResponse:
        if self.flood_limit is None:
            return self._handle(request)
        now = self.clock()
        if now - self._flood_start >= self.flood_window:
            self._flood_start, self._flood_used = now, 0
        reset = self._flood_start + self.flood_window - now
        if self._flood_used >= self.flood_limit:
            self.flood_refused += 1
            response = SimResponse.json(429, {"success": False, "error": {
                "code": "TOO_MANY_REQUESTS", "message": "Rate limit exceeded"}})
        else:
            self._flood_used += 1
            response = self._handle(request)
        if self.flood_headers:
            response.headers.update({
                "X-FloodControl-MinuteLimit": str(self.flood_limit),
                "X-FloodControl-Remaining": str(self.flood_limit - self._flood_used),
                "X-FloodControl-Reset": str(math.ceil(reset)) if self.flood_window >= 60 else f"{reset:.3f}",
            })
        return response

    def _handle(self, request: SimRequest) -> SimResponse:
        if request.path.rstrip("/") != "/webservice.php":
            return SimResponse.text(404, "<html><body><h1>Not Found</h1></body></html>")
        op = request.label
        if op not in GET_OPERATIONS | POST_OPERATIONS or (op == "revise" and not self.revise_supported):
            if self.unknown_operation == "php":
                return SimResponse.text(200, PHP_ERROR)
            return self._fail("UNKNOWN_OPERATION")
        params = request.query if op in GET_OPERATIONS else request.form
        session_name = request.query.get("sessionName") or request.form.get("sessionName")
        if op not in PRELOGIN:
            if not session_name:
                return self._fail("AUTHENTICATION_REQUIRED")
            session = self.sessions.get(session_name)
            if session is None:
                return self._fail(self.expiry_code if session_name in self._expired else "INVALID_SESSIONID")
            if op == "query" and self.expire_session_after_queries is not None:
                if session["queries"] >= self.expire_session_after_queries:
                    del self.sessions[session_name]
                    self._expired.add(session_name)
                    return self._fail(self.expiry_code)
                session["queries"] += 1
        try:
            return getattr(self, f"_op_{op}")(params, session_name)
        except VtqlError as exc:
            return self._fail(exc.code, str(exc))

    # operations
    def _op_getchallenge(self, params: dict[str, str], _session: str | None) -> SimResponse:
        username = params.get("username", "")
        if not username:
            return self._fail("AUTHENTICATION_REQUIRED", "username is required")
        if username not in self.users:
            return self._fail("ACCESS_DENIED", "username does not exists")
        token = secrets.token_hex(7)[:13]
        now = int(time.time())
        self.challenges[username] = (token, time.time() + self.challenge_ttl)
        return self._ok({"token": token, "serverTime": now, "expireTime": now + self.challenge_ttl})

    def _op_login(self, params: dict[str, str], _session: str | None) -> SimResponse:
        username, key = params.get("username", ""), params.get("accessKey", "")
        challenge = self.challenges.get(username)
        if challenge is None or challenge[1] < time.time():
            return self._fail("INVALID_AUTH_TOKEN")
        user_key = self.users.get(username)
        if user_key is None or key != hashlib.md5((challenge[0] + user_key).encode()).hexdigest():
            return self._fail("INVALID_USER_CREDENTIALS")
        session_name = secrets.token_hex(10)[:19]
        self.sessions[session_name] = {"user": username, "queries": 0, "created": time.time()}
        return self._ok({"sessionName": session_name, "userId": USER_ID, "version": "0.22",
                         "vtigerVersion": "7.5.0" if self.mode == "vtiger" else "7.1.0-simply"})

    def _op_extendsession(self, params: dict[str, str], session: str | None) -> SimResponse:
        if session not in self.sessions:
            return self._fail("AUTHENTICATION_REQUIRED")
        return self._ok({"sessionName": session, "userId": USER_ID})

    def _op_logout(self, params: dict[str, str], session: str | None) -> SimResponse:
        self.sessions.pop(session or "", None)
        return self._ok({"message": "successfull"})

    def _op_listtypes(self, params: dict[str, str], _session: str | None) -> SimResponse:
        return self._ok({"types": ["Accounts", "Contacts", "Users"], "information": {
            "Accounts": {"isEntity": True, "label": "Organizations", "singular": "Organization"},
            "Contacts": {"isEntity": True, "label": "Contacts", "singular": "Contact"},
            "Users": {"isEntity": True, "label": "Users", "singular": "User"}}})

    def _fields(self) -> list[tuple[str, str, bool, str]]:
        fields = list(ACCOUNT_FIELDS)
        if self.cvr_field:
            fields.append((self.cvr_field, self.cvr_label, False, "string"))
        return fields

    def _op_describe(self, params: dict[str, str], _session: str | None) -> SimResponse:
        if params.get("elementType") != "Accounts":
            return self._fail("ACCESS_DENIED", f"Permission to perform the operation is denied for name "
                                               f"{params.get('elementType', '')}")
        fields = [{"name": n, "label": label, "mandatory": mandatory, "type": {"name": kind},
                   "nullable": not mandatory, "editable": n not in ("account_no", "createdtime", "modifiedtime")}
                  for n, label, mandatory, kind in self._fields()]
        fields.append({"name": "id", "label": "id", "mandatory": False, "type": {"name": "autogenerated"},
                       "nullable": False, "editable": False})
        return self._ok({"label": "Organizations", "name": "Accounts", "createable": True, "updateable": True,
                         "deleteable": True, "retrieveable": True, "fields": fields, "idPrefix": ACCOUNT_PREFIX,
                         "isEntity": True, "labelFields": "accountname"})

    def _op_query(self, params: dict[str, str], _session: str | None) -> SimResponse:
        text = params.get("query", "")
        if not text.strip():
            raise VtqlError("QUERY_SYNTAX_ERROR", "There is an syntax error in query")
        q = parse_vtql(text)
        if q["module"] != "Accounts":
            return self._fail("ACCESS_DENIED", f"Permission to perform the operation is denied for name {q['module']}")
        known = {f[0] for f in self._fields()} | {"id"}
        used = [c for _, (c, _, _) in q["where"]] + q["order"]
        if isinstance(q["columns"], list):
            used += q["columns"]
        for column in used:
            if column not in known:
                return self._fail("ACCESS_DENIED", f"Permission to access '{column}' attribute denied")
        rows = list(self.accounts)
        if q["where"]:
            selected = []
            for record in rows:
                result = None
                for joiner, (column, op, operand) in q["where"]:
                    hit = _condition(record, column, op, operand)
                    result = hit if result is None else (result and hit if joiner == "AND" else result or hit)
                if result:
                    selected.append(record)
            rows = selected
        if q["columns"] == "count":  # an SQL count: the permission filter only runs over fetched records
            return self._ok([{"count": str(len(rows))}])
        if q["order"]:
            rows.sort(key=lambda r: [_sort_key(r.get(c, "")) for c in q["order"]], reverse=q["descending"])
        limit = self.row_cap if q["limit"] is None else min(q["limit"], self.row_cap)
        page = rows[q["offset"]:q["offset"] + limit]
        page = [r for r in page if r.get("id") not in self.hidden_ids]  # dropped after the LIMIT, as vTiger does
        return self._ok([self._out(r, q["columns"]) for r in page])

    def _op_retrieve(self, params: dict[str, str], _session: str | None) -> SimResponse:
        record_id = params.get("id", "")
        if not re.fullmatch(r"\d+x\d+", record_id):
            return self._fail("INVALID_ID_ATTRIBUTE")
        record = self._find(record_id)
        if record is None or record_id in self.hidden_ids:
            return self._fail(self.missing_record_code)
        return self._ok(self._out(record))

    def _element(self, params: dict[str, str]) -> dict[str, Any]:
        try:
            element = json.loads(params.get("element", ""))
        except ValueError:
            raise VtqlError("INVALID_ID_ATTRIBUTE", "element is not valid JSON") from None
        if not isinstance(element, dict):
            raise VtqlError("INVALID_ID_ATTRIBUTE", "element is not an object")
        return {k: "" if v is None else str(v) for k, v in element.items()}

    def _missing_mandatory(self, record: dict[str, str]) -> SimResponse | None:
        for name, _label, mandatory, _kind in self._fields():
            if mandatory and not record.get(name):
                return self._fail("MANDATORY_FIELDS_MISSING", f"{name} does not have a value")
        return None

    def _op_create(self, params: dict[str, str], _session: str | None) -> SimResponse:
        if params.get("elementType") != "Accounts":
            return self._fail("ACCESS_DENIED")
        element = self._element(params)
        self._next_id += 1
        record = make_account(self._next_id, element.get("accountname", ""), cvr_field=self.cvr_field or "")
        record.update({k: v for k, v in element.items() if k != "id"})
        refused = self._missing_mandatory(record)
        if refused:
            return refused
        self.accounts.append(record)
        return self._ok(self._out(record))

    def _op_update(self, params: dict[str, str], _session: str | None) -> SimResponse:
        element = self._element(params)
        record = self._find(element.get("id", ""))
        if record is None:
            return self._fail(self.missing_record_code)
        # update replaces the whole record: fields left out become empty, as in vTiger
        replacement = {name: element.get(name, "") for name, *_ in self._fields()}
        for fixed in ("account_no", "createdtime"):
            replacement[fixed] = record.get(fixed, "")
        refused = self._missing_mandatory(replacement)
        if refused:
            return refused
        replacement["modifiedtime"] = time.strftime("%Y-%m-%d %H:%M:%S")
        replacement["id"] = record["id"]
        record.clear()
        record.update(replacement)
        return self._ok(self._out(record))

    def _op_revise(self, params: dict[str, str], _session: str | None) -> SimResponse:
        element = self._element(params)
        record = self._find(element.get("id", ""))
        if record is None:
            return self._fail(self.missing_record_code)
        record.update({k: v for k, v in element.items() if k != "id"})
        record["modifiedtime"] = time.strftime("%Y-%m-%d %H:%M:%S")
        return self._ok(self._out(record))

    def _op_delete(self, params: dict[str, str], _session: str | None) -> SimResponse:
        record = self._find(params.get("id", ""))
        if record is None:
            return self._fail(self.missing_record_code)
        self.accounts.remove(record)
        return self._ok({"status": "successful"})

    def fault_response(self, fault: Fault, request: SimRequest) -> SimResponse:
        if fault.status == 429:  # Cloud-style flood control
            return SimResponse.json(429, {"success": False, "error": {"code": "TOO_MANY_REQUESTS",
                                                                       "message": "Rate limit exceeded"}},
                                    {"X-FloodControl-Remaining": "0"})
        return super().fault_response(fault, request)
