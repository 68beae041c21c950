"""The customer register: validation, search, create/edit (audited), lock, history, dashboard counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from lib.audit import AUDITED_TABLES, insert_row, read_row, update_row
from lib.cvr import InvalidCVR, validate_cvr
from lib.db import fold_sql, like_contains, write_transaction
from lib.errors import InputError
from lib.roles import require_role
from lib.runs import job_run, row_history
from lib.text_input import check_text, text_problem

EDITABLE_FIELDS = AUDITED_TABLES["customers"]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Characters per field: generous enough for what e-conomic and the CRMs allow (e-conomic: name 255, address
# 510, zip 30, phone 255), so a sync never meets them. Migration 012 holds the database to the same numbers.
FIELD_LIMITS = {
    "name": 255, "cvr_number": 20, "economic_customer_number": 20, "vtiger_account_id": 100,
    "simplycrm_account_id": 100, "email": 320, "phone": 255, "address": 510, "zip": 30, "city": 100,
}
SEARCH_LIMIT = 200
STALE = "changed by someone else meanwhile — reload"


class CustomerInvalid(InputError):
    """One or more fields are invalid; `errors` maps field → message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


class CustomerChanged(InputError):
    """The stored customer no longer has the values the form was opened with (nothing written)."""

    def __init__(self, customer_id: int, fields: list[str]):
        super().__init__(f"customer {customer_id} was {STALE} ({', '.join(fields)})")
        self.fields = fields


def _blank_to_none(value):
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


def validate_customer(data: dict) -> dict:
    """Cleaned values for the given fields, or CustomerInvalid naming each bad field."""
    errors: dict[str, str] = {}
    clean: dict = {}
    for key, value in data.items():
        if key not in EDITABLE_FIELDS:
            errors[key] = "is not a customer field"
            continue
        if key in FIELD_LIMITS and value is not None and not isinstance(value, bool):
            problem = text_problem(str(value), FIELD_LIMITS[key])
            if problem:
                errors[key] = problem
                continue
        clean[key] = _blank_to_none(value)
    if "name" in clean and "name" not in errors and not clean["name"]:
        errors["name"] = "a customer needs a name"
    if clean.get("cvr_number") is not None:
        try:
            clean["cvr_number"] = validate_cvr(clean["cvr_number"])
        except InvalidCVR as exc:
            errors["cvr_number"] = str(exc)
    if clean.get("economic_customer_number") is not None:
        raw = str(clean["economic_customer_number"]).strip()
        if raw.endswith(".0"):
            raw = raw[:-2]
        if not raw.isdigit() or not 1 <= int(raw) <= 999_999_999:
            errors["economic_customer_number"] = f"must be a whole number from 1 to 999999999, got {raw!r}"
        else:
            clean["economic_customer_number"] = int(raw)
    if clean.get("email") and not all(EMAIL.match(e) for e in str(clean["email"]).split()):
        errors["email"] = f"{clean['email']!r} is not an e-mail address"
    if "subscriptions_locked" in clean:
        clean["subscriptions_locked"] = bool(clean["subscriptions_locked"])
    if errors:
        raise CustomerInvalid(errors)
    return clean


_LIMIT_VIOLATION = re.compile(r"customers[._](\w+?)(?:_length| is longer)")


def _integrity_error(exc: IntegrityError, clean: dict) -> CustomerInvalid:
    """A unique or limit constraint the database enforced, as the field it concerns."""
    message = str(exc.orig).lower()
    limit = _LIMIT_VIOLATION.search(message)
    if limit and limit.group(1) in FIELD_LIMITS:
        field = limit.group(1)
        return CustomerInvalid({field: f"is longer than the {FIELD_LIMITS[field]} characters the database allows"})
    if "cvr" in message:
        return CustomerInvalid({"cvr_number": f"another customer already has CVR {clean.get('cvr_number')}"})
    if "economic" in message:
        return CustomerInvalid({"economic_customer_number":
                                f"another customer already has e-conomic number {clean.get('economic_customer_number')}"})
    return CustomerInvalid({"customer": str(exc.orig).splitlines()[0][:300]})


def create_customer(engine: Engine, data: dict, *, user: str, role: str = "admin") -> int:
    """Validate, then insert as one customer-edit run; returns the new id."""
    require_role(role, "operator", "create customers")
    clean = validate_customer(data)
    if not clean.get("name"):
        raise CustomerInvalid({"name": "a customer needs a name"})
    with job_run(engine, "customer-edit", user=user, dry_run=False,
                 parameters={"action": "create", "name": clean["name"]}) as run:
        try:
            with write_transaction(engine) as conn:
                new_id = insert_row(conn, "customers", clean, run_id=run.id, user=user)
        except IntegrityError as exc:
            raise _integrity_error(exc, clean) from None
        run.finish({"created": 1, "customer_id": new_id})
    return new_id


def same_value(stored, opened) -> bool:
    """Does the stored value equal the one a form showed? (blank = NULL; numbers compare as text)."""
    stored, opened = _blank_to_none(stored), _blank_to_none(opened)
    if isinstance(stored, bool) or isinstance(opened, bool):
        return bool(stored) == bool(opened)
    if stored is None or opened is None:
        return stored is None and opened is None
    return str(stored) == str(opened)


def _locked_row(conn, customer_id: int) -> dict | None:
    """The row, locked against other writers until the transaction ends (SQLite: BEGIN IMMEDIATE already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT id FROM customers WHERE id = :id FOR UPDATE"), {"id": customer_id})
    return read_row(conn, "customers", customer_id)


def update_customer(engine: Engine, customer_id: int, data: dict, *, user: str, role: str = "admin",
                    expected: dict | None = None) -> dict:
    """Write the fields that differ; returns {field: (old, new)}. A no-op writes no run.

    `expected` is what the form was opened with ({field: value}; get_customer's dict may be passed as is, its
    id and timestamps are ignored): when the stored row no longer has those values (checked inside the write
    transaction, row locked), CustomerChanged is raised and nothing is written. A field someone else already
    set to the value written here is no conflict.
    """
    require_role(role, "operator", "edit customers")
    clean = validate_customer(data)
    expected = {k: v for k, v in (expected or {}).items() if k not in ("id", "created_at", "updated_at")}
    unknown = set(expected) - set(EDITABLE_FIELDS)
    if unknown:
        raise InputError(f"not customer fields: {', '.join(sorted(unknown))}")
    with engine.connect() as conn:
        current = read_row(conn, "customers", customer_id)
    if current is None:
        raise InputError(f"there is no customer with id {customer_id}")
    if all(same_value(current.get(k), v) for k, v in clean.items()):
        return {}
    with job_run(engine, "customer-edit", user=user, dry_run=False,
                 parameters={"action": "edit", "customer_id": customer_id}) as run:
        try:
            with write_transaction(engine) as conn:
                current = _locked_row(conn, customer_id)
                if current is None:
                    raise InputError(f"customer {customer_id} was deleted meanwhile")
                stale = sorted(f for f, v in expected.items()
                               if not same_value(current.get(f), v)
                               and not (f in clean and same_value(current.get(f), clean[f])))
                if stale:
                    raise CustomerChanged(customer_id, stale)
                changed = update_row(conn, "customers", customer_id, clean, run_id=run.id, user=user,
                                     current=current)
        except IntegrityError as exc:
            raise _integrity_error(exc, clean) from None
        run.finish({"changed_fields": sorted(changed), "customer_id": customer_id})
    return changed


def set_subscriptions_locked(engine: Engine, customer_id: int, locked: bool, *, user: str, role: str = "admin") -> dict:
    return update_customer(engine, customer_id, {"subscriptions_locked": locked}, user=user, role=role)


def get_customer(engine: Engine, customer_id: int) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(
            text(f"SELECT id, {', '.join(EDITABLE_FIELDS)}, created_at, updated_at FROM customers WHERE id = :id"),
            {"id": customer_id},
        ).mappings().first()
    return _decode(dict(row)) if row else None


def _decode(row: dict) -> dict:
    row["subscriptions_locked"] = bool(row["subscriptions_locked"])
    return row


@dataclass(frozen=True)
class CustomerPage:
    rows: list[dict]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


FILTERS = {
    "all": "",
    "missing_cvr": "cvr_number IS NULL",
    "not_linked_economic": "economic_customer_number IS NULL",
    "locked": "subscriptions_locked = TRUE",
}


def search_text(query: str | None) -> str:
    """The search as typed, trimmed; TextRefused when it is longer than SEARCH_LIMIT or has a control character."""
    return check_text((query or "").strip(), what="the search", limit=SEARCH_LIMIT)


def search_customers(engine: Engine, query: str = "", *, filter_name: str = "all", page: int = 1,
                     page_size: int = 50) -> CustomerPage:
    """One page of customers matching name (a substring, taken literally), CVR or e-conomic number.

    Indexed so 50,000 stay fast. TextRefused (nothing searched) for a search over SEARCH_LIMIT characters
    or with a control character.
    """
    where: list[str] = []
    params: dict = {"limit": page_size, "offset": (max(page, 1) - 1) * page_size}
    q = search_text(query)
    if q:
        digits = re.sub(r"[\s.-]", "", q.upper().removeprefix("DK"))
        clauses = [f"{fold_sql(engine, 'name')} LIKE :q ESCAPE '\\'"]
        params["q"] = like_contains(q.casefold())
        if digits.isascii() and digits.isdigit():
            clauses.append("cvr_number LIKE :digits")
            params["digits"] = f"{digits}%"
            if len(digits) <= 9:
                clauses.append("economic_customer_number = :number")
                params["number"] = int(digits)
        where.append("(" + " OR ".join(clauses) + ")")
    if FILTERS.get(filter_name):
        where.append(FILTERS[filter_name])
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    columns = f"id, {', '.join(EDITABLE_FIELDS)}, updated_at"
    with engine.connect() as conn:
        total = conn.execute(text(f"SELECT count(*) FROM customers {clause}"), params).scalar_one()
        rows = conn.execute(
            text(f"SELECT {columns} FROM customers {clause} ORDER BY lower(name), id LIMIT :limit OFFSET :offset"),
            params,
        ).mappings().all()
    return CustomerPage([_decode(dict(r)) for r in rows], total, max(page, 1), page_size)


def customer_history(engine: Engine, customer_id: int) -> list[dict]:
    return row_history(engine, "customers", customer_id)


def dashboard_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) AS customers, "
                "sum(CASE WHEN cvr_number IS NULL THEN 1 ELSE 0 END) AS missing_cvr, "
                "sum(CASE WHEN economic_customer_number IS NULL THEN 1 ELSE 0 END) AS not_linked_economic, "
                "sum(CASE WHEN subscriptions_locked THEN 1 ELSE 0 END) AS locked "
                "FROM customers"
            )
        ).mappings().one()
        subscriptions = conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()
    return {k: int(v or 0) for k, v in row.items()} | {"subscriptions": int(subscriptions)}


def customer_subscriptions(engine: Engine, customer_id: int) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, external_id, product, sku, quantity, unit_price, billing_interval, start_date, end_date, "
                 "status, note FROM subscriptions WHERE customer_id = :id ORDER BY start_date, id"),
            {"id": customer_id},
        ).mappings().all()
    return [dict(r) for r in rows]
