"""The customer register: validation, search, create/edit (audited), lock, history, dashboard counts."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from lib.audit import AUDITED_TABLES, insert_row, read_row, update_row
from lib.cvr import InvalidCVR, validate_cvr
from lib.db import fold_sql, write_transaction
from lib.errors import InputError
from lib.roles import require_role
from lib.runs import job_run, row_history

EDITABLE_FIELDS = AUDITED_TABLES["customers"]
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class CustomerInvalid(InputError):
    """One or more fields are invalid; `errors` maps field → message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


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
        clean[key] = _blank_to_none(value)
    if "name" in clean and not clean["name"]:
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


def _unique_violation(exc: IntegrityError, clean: dict) -> CustomerInvalid:
    message = str(exc.orig).lower()
    if "cvr" in message:
        return CustomerInvalid({"cvr_number": f"another customer already has CVR {clean.get('cvr_number')}"})
    if "economic" in message:
        return CustomerInvalid({"economic_customer_number":
                                f"another customer already has e-conomic number {clean.get('economic_customer_number')}"})
    return CustomerInvalid({"customer": str(exc.orig).splitlines()[0]})


def create_customer(engine: Engine, data: dict, *, user: str, role: str = "admin") -> int:
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
            raise _unique_violation(exc, clean) from None
        run.finish({"created": 1, "customer_id": new_id})
    return new_id


def update_customer(engine: Engine, customer_id: int, data: dict, *, user: str, role: str = "admin") -> dict:
    """Write the fields that differ; returns {field: (old, new)}. A no-op writes no run."""
    require_role(role, "operator", "edit customers")
    clean = validate_customer(data)
    with engine.connect() as conn:
        current = read_row(conn, "customers", customer_id)
    if current is None:
        raise InputError(f"there is no customer with id {customer_id}")
    if not any(current.get(k) != v for k, v in clean.items()):
        return {}
    with job_run(engine, "customer-edit", user=user, dry_run=False,
                 parameters={"action": "edit", "customer_id": customer_id}) as run:
        try:
            with write_transaction(engine) as conn:
                changed = update_row(conn, "customers", customer_id, clean, run_id=run.id, user=user)
        except IntegrityError as exc:
            raise _unique_violation(exc, clean) from None
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


def search_customers(engine: Engine, query: str = "", *, filter_name: str = "all", page: int = 1,
                     page_size: int = 50) -> CustomerPage:
    """One page of customers matching name, CVR or e-conomic number; indexed so 50,000 stay fast."""
    where: list[str] = []
    params: dict = {"limit": page_size, "offset": (max(page, 1) - 1) * page_size}
    q = (query or "").strip()
    if q:
        digits = re.sub(r"[\s.-]", "", q.upper().removeprefix("DK"))
        clauses = [f"{fold_sql(engine, 'name')} LIKE :q"]
        params["q"] = f"%{q.casefold()}%"
        if digits.isdigit():
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
            text(f"SELECT {columns} FROM customers {clause} ORDER BY {fold_sql(engine, 'name')}, id LIMIT :limit OFFSET :offset"),
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
