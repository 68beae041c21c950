"""The one way to write customers and subscriptions: every field change lands in `changes`."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

AUDITED_TABLES = {
    "customers": (
        "name", "cvr_number", "economic_customer_number", "vtiger_account_id", "simplycrm_account_id",
        "email", "phone", "address", "zip", "city", "subscriptions_locked",
    ),
    "subscriptions": (
        "customer_id", "external_id", "product", "sku", "quantity", "unit_price", "billing_interval",
        "start_date", "end_date", "status", "note", "source",
    ),
}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def encode_value(value: Any) -> str | None:
    """JSON text for the audit log; None stays SQL NULL so 'empty' and 'unset' differ."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return json.dumps(str(value))
    if isinstance(value, datetime | date):
        return json.dumps(value.isoformat())
    return json.dumps(value, ensure_ascii=False)


def decode_value(raw: str | None) -> Any:
    return None if raw is None else json.loads(raw)


def _normal(value: Any) -> Any:
    """Compare values the way the database stores them (bools as bools, numbers as text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal | float):
        return str(Decimal(str(value)).normalize())
    if isinstance(value, datetime | date):
        return value.isoformat()[:10] if isinstance(value, date) and not isinstance(value, datetime) else value.isoformat()
    return value


def _columns(table: str, values: dict) -> dict:
    allowed = AUDITED_TABLES[table]
    unknown = set(values) - set(allowed)
    if unknown:
        raise ValueError(f"{table}: unknown column(s) {', '.join(sorted(unknown))}")
    return values


def _log(conn: Connection, run_id: int | None, table: str, row_id: int, action: str, field: str,
         old: Any, new: Any, user: str, at: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO changes (run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at) "
            "VALUES (:run, :t, :row, :a, :f, :old, :new, :u, :at)"
        ),
        {"run": run_id, "t": table, "row": row_id, "a": action, "f": field, "old": encode_value(old),
         "new": encode_value(new), "u": user, "at": at},
    )


def read_row(conn: Connection, table: str, row_id: int) -> dict | None:
    cols = ", ".join(("id",) + AUDITED_TABLES[table])
    row = conn.execute(text(f"SELECT {cols} FROM {table} WHERE id = :id"), {"id": row_id}).mappings().first()
    return dict(row) if row else None


def insert_row(conn: Connection, table: str, values: dict, *, run_id: int | None, user: str) -> int:
    """Insert and log every non-null field as one 'insert' change set; returns the new id."""
    values = _columns(table, values)
    now = utcnow()
    cols = list(values) + ["created_at", "updated_at"]
    params = {**values, "created_at": now, "updated_at": now}
    new_id = conn.execute(
        text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) RETURNING id"),
        params,
    ).scalar_one()
    for field, value in values.items():
        if value is not None:
            _log(conn, run_id, table, new_id, "insert", field, None, value, user, now)
    if not any(v is not None for v in values.values()):
        _log(conn, run_id, table, new_id, "insert", "id", None, new_id, user, now)
    return new_id


def update_row(conn: Connection, table: str, row_id: int, values: dict, *, run_id: int | None, user: str,
               current: dict | None = None) -> dict[str, tuple[Any, Any]]:
    """Write only the fields that really change; returns {field: (old, new)} of what was written."""
    values = _columns(table, values)
    current = current if current is not None else read_row(conn, table, row_id)
    if current is None:
        raise LookupError(f"{table} row {row_id} does not exist")
    changed = {f: (current.get(f), v) for f, v in values.items() if _normal(current.get(f)) != _normal(v)}
    if not changed:
        return {}
    now = utcnow()
    assignments = ", ".join(f"{f} = :{f}" for f in changed)
    conn.execute(
        text(f"UPDATE {table} SET {assignments}, updated_at = :updated_at WHERE id = :id"),
        {**{f: new for f, (_, new) in changed.items()}, "updated_at": now, "id": row_id},
    )
    for field, (old, new) in changed.items():
        _log(conn, run_id, table, row_id, "update", field, old, new, user, now)
    return changed


def delete_row(conn: Connection, table: str, row_id: int, *, run_id: int | None, user: str) -> dict:
    """Delete and log the whole row (field by field) so undo can put it back."""
    current = read_row(conn, table, row_id)
    if current is None:
        raise LookupError(f"{table} row {row_id} does not exist")
    now = utcnow()
    conn.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})
    for field in AUDITED_TABLES[table]:
        _log(conn, run_id, table, row_id, "delete", field, current.get(field), None, user, now)
    return current
