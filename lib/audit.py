"""The one way to write customers and subscriptions: every field change lands in `changes`."""

from __future__ import annotations

import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import bindparam, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import NoSuchTableError

from lib import tables

AUDITED_TABLES = {
    "customers": (
        "name", "cvr_number", "economic_customer_number", "vtiger_account_id", "simplycrm_account_id",
        "email", "phone", "address", "zip", "city", "subscriptions_locked",
    ),
    "subscriptions": (
        "customer_id", "external_id", "product", "sku", "quantity", "unit_price", "billing_interval",
        "start_date", "end_date", "status", "note", "source",
    ),
    "module_settings": ("module", "key", "value"),  # lib.modules.set_module_setting
}
CORE_AUDITED = frozenset(AUDITED_TABLES)  # module tables join AUDITED_TABLES as undo meets them
_UNSTAMPED: set[str] = set()  # audited module tables without an updated_at column
_STAMPS = ("id", "created_at", "updated_at")


def audit_module_table(conn: Connection, table: str) -> tuple[str, ...]:
    """Read a module table's columns (by reflection) into AUDITED_TABLES, so the helpers here and undo write
    and log it like a core table; its values are compared as text (no typed metadata in lib/tables.py)."""
    if table in tables.BY_NAME or table in ("module_settings", "changes", "runs"):
        raise ValueError(f"{table} is a core table, not a module's")
    try:
        names = [c["name"] for c in inspect(conn).get_columns(table)]
    except NoSuchTableError:
        raise LookupError(f"table {table} does not exist") from None
    AUDITED_TABLES[table] = tuple(n for n in names if n not in _STAMPS)
    if "updated_at" in names:
        _UNSTAMPED.discard(table)
    else:
        _UNSTAMPED.add(table)
    return AUDITED_TABLES[table]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


WHOLE_ROW = "*"  # the `field` of an insert or delete: the value is the whole row as a JSON object


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# what json.dumps(_jsonable(value), ensure_ascii=False) gives, for the exact classes a column holds
_SCALAR_JSON: dict[type, Any] = {
    str: encode_basestring, int: int.__repr__, bool: lambda value: "true" if value else "false",
    Decimal: lambda value: f'"{value}"', date: lambda value: f'"{value.isoformat()}"',
    datetime: lambda value: f'"{value.isoformat()}"',
}


def encode_value(value: Any) -> str | None:
    """JSON text for the audit log; None stays SQL NULL so 'empty' and 'unset' differ."""
    if value is None:
        return None
    scalar = _SCALAR_JSON.get(value.__class__)
    if scalar is not None:  # a field's value: a call per changed field, so json.dumps' overhead counts
        return scalar(value)
    if isinstance(value, dict):
        return json.dumps({k: _jsonable(v) for k, v in value.items()}, ensure_ascii=False)
    return json.dumps(_jsonable(value), ensure_ascii=False)


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


normal_value = _normal  # for lib.modules.audited_update


def unstamped_tables() -> set[str]:
    """Audited module tables without an updated_at column (the helpers here set it on the others)."""
    return _UNSTAMPED


def _columns(table: str, values: dict) -> dict:
    allowed = AUDITED_TABLES[table]
    unknown = set(values) - set(allowed)
    if unknown:
        raise ValueError(f"{table}: unknown column(s) {', '.join(sorted(unknown))}")
    return values


def log_change(conn: Connection, run_id: int | None, table: str, row_id: int, action: str, field: str,
         old: Any, new: Any, user: str, at: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO changes (run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at) "
            "VALUES (:run, :t, :row, :a, :f, :old, :new, :u, :at)"
        ),
        {"run": run_id, "t": table, "row": row_id, "a": action, "f": field, "old": encode_value(old),
         "new": encode_value(new), "u": user, "at": at},
    )


def delete_rows(conn: Connection, table: str, row_ids: list[int], *, run_id: int | None, user: str,
                batch: int = 1000) -> int:
    """Delete the rows of `row_ids` that exist, logging each whole row as `delete_row` does, a batch per
    statement (undo of a large import: set-based, not a round trip per row). Returns how many were deleted."""
    whole_row = _whole_row_json(table) if conn.dialect.name == "postgresql" else None
    if whole_row is not None:
        return _delete_rows_on_server(conn, table, row_ids, whole_row, run_id=run_id, user=user)
    cols = ", ".join(("id",) + AUDITED_TABLES[table])
    select = text(f"SELECT {cols} FROM {table} WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
    delete = text(f"DELETE FROM {table} WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
    deleted = 0
    for start in range(0, len(row_ids), batch):
        ids = row_ids[start:start + batch]
        rows = [dict(r) for r in conn.execute(select, {"ids": ids}).mappings()]
        if not rows:
            continue
        now = utcnow()
        conn.execute(delete, {"ids": [r["id"] for r in rows]})
        entries = [(run_id, table, r["id"], "delete", WHOLE_ROW, encode_value({k: v for k, v in r.items() if k != "id"}),
                    None, user, now) for r in rows]
        _insert_changes(conn, entries)
        deleted += len(rows)
    return deleted


def _whole_row_json(table: str) -> str | None:
    """SQL building the text `encode_value` gives for a whole row of `table` (same keys, order, spacing and
    escapes), or None when a column's type has no such expression here (then Python encodes the rows)."""
    typed = tables.BY_NAME.get(table)
    if typed is None:
        return None
    parts = []
    for name in AUDITED_TABLES[table]:
        python_type = typed.c[name].type.python_type
        if python_type is Decimal:  # encode_value writes str(Decimal): the numeric's own text, quoted
            value = f"'\"' || {name}::text || '\"'"
        elif python_type in (str, int, bool, date):  # to_json: ISO dates whatever DateStyle; JSON's escapes
            value = f"to_json({name})::text"
        else:
            return None
        parts.append(f"{json.dumps(name)}: ' || coalesce({value}, 'null')")
    return "'{" + " || ', ".join(parts) + " || '}'"


def _delete_rows_on_server(conn: Connection, table: str, row_ids: list[int], whole_row: str, *,
                           run_id: int | None, user: str, batch: int = 20_000) -> int:
    """`delete_rows` in one statement per batch: the server deletes and writes the audit entries from the
    deleted rows itself, so no row travels to Python and back (undo of a large import on PostgreSQL)."""
    statement = text(
        f"WITH gone AS (DELETE FROM {table} WHERE id = ANY(:ids) RETURNING *) "
        "INSERT INTO changes (run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at) "
        f"SELECT :run, :t, id, 'delete', :f, {whole_row}, NULL, :u, :at FROM gone ORDER BY id"
    )
    deleted = 0
    for start in range(0, len(row_ids), batch):
        params = {"ids": row_ids[start:start + batch], "run": run_id, "t": table, "f": WHOLE_ROW, "u": user,
                  "at": utcnow()}
        deleted += conn.execute(statement, params).rowcount
    return deleted


def restore_rows(conn: Connection, table: str, restores: list[tuple[int, dict]], *, run_id: int | None,
                 user: str, batch: int = 1000) -> int:
    """Set rows' fields back, each item (row id, {field: value}), writing and logging only the fields that
    really change, as `update_row` does row by row; rows that no longer exist are skipped. The UPDATEs keep
    the given order (a value one row gives up can be the value an earlier item takes back), sent a batch at
    a time, except on PostgreSQL when no unique column changes: then one UPDATE from a COPY-filled table.
    Returns how many fields were written."""
    typed = tables.BY_NAME.get(table)
    if typed is None:  # no column types to bind with (module_settings): the few rows one by one
        return sum(len(update_row(conn, table, row_id, values, run_id=run_id, user=user)) for row_id, values in restores)
    columns = AUDITED_TABLES[table]
    names = ("id", *columns)
    select = text(f"SELECT {', '.join(names)} FROM {table} WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True))
    ids = [row_id for row_id, _ in restores]
    current: dict[int, dict] = {}
    for start in range(0, len(ids), batch):
        current.update({r[0]: dict(zip(names, r, strict=True)) for r in conn.execute(select, {"ids": ids[start:start + batch]})})
    now = utcnow()
    unset = (False, None)
    writes: list[tuple] = []  # (id, then per column: whether to set it, its value)
    log: list[tuple] = []
    for row_id, values in restores:
        row = current.get(row_id)
        if row is None:
            continue
        changed = {f: v for f, v in _columns(table, values).items() if _normal(row.get(f)) != _normal(v)}
        if not changed:
            continue
        writes.append((row_id, *[x for c in columns for x in ((True, changed[c]) if c in changed else unset)]))
        log.extend((run_id, table, row_id, "update", f, encode_value(row.get(f)), encode_value(v), user, now)
                   for f, v in changed.items())
    if not writes:
        return 0
    if conn.dialect.name == "postgresql":
        from psycopg2.extras import execute_batch

        # typed parameters: the CASE needs one type, and a cast is what assigning the value would do
        types = {c: typed.c[c].type.compile(dialect=conn.dialect) for c in columns}
        unique = _unique_columns(conn, table)
        flags = [1 + 2 * i for i, c in enumerate(columns) if unique is None or c in unique]
        with conn.connection.dbapi_connection.cursor() as cursor:
            if unique is not None and not any(w[i] for w in writes for i in flags):
                _restore_by_copy(cursor, table, columns, types, writes, now)
            else:
                sets = ", ".join(f"{c} = CASE WHEN %s THEN CAST(%s AS {types[c]}) ELSE {c} END" for c in columns)
                execute_batch(cursor, f"UPDATE {table} SET {sets}, updated_at = %s WHERE id = %s",
                              [(*w[1:], now, w[0]) for w in writes], page_size=batch)
    else:
        sets = ", ".join(f"{c} = CASE WHEN ? THEN ? ELSE {c} END" for c in columns)
        conn.exec_driver_sql(f"UPDATE {table} SET {sets}, updated_at = ? WHERE id = ?",
                             [(*w[1:], now, w[0]) for w in writes])
    _insert_changes(conn, log)
    return len(log)


def _restore_by_copy(cursor: Any, table: str, columns: tuple[str, ...], types: dict[str, str],
                     writes: list[tuple], now: datetime) -> None:
    """restore_rows' writes in one UPDATE from a temporary table filled by COPY (PostgreSQL): the server
    parses neither a statement per row nor a VALUES list of all of them. Only when the order cannot matter."""
    from lib.bulk_copy import _copy_column

    cursor.execute("DROP TABLE IF EXISTS undo_restore")
    cursor.execute("CREATE TEMPORARY TABLE undo_restore (id BIGINT, "
                   + ", ".join(f"set_{c} BOOLEAN, new_{c} {types[c]}" for c in columns) + ") ON COMMIT DROP")
    names = ["id", *(n for c in columns for n in (f"set_{c}", f"new_{c}"))]
    for start in range(0, len(writes), 20_000):
        texts = [_copy_column([_COPY_BOOL[v] if v.__class__ is bool else v for v in values])
                 for values in zip(*writes[start:start + 20_000], strict=True)]
        lines = "".join("\t".join(row) + "\n" for row in zip(*texts, strict=True))
        cursor.copy_expert(f"COPY undo_restore ({', '.join(names)}) FROM STDIN", io.StringIO(lines))
    sets = ", ".join(f"{c} = CASE WHEN r.set_{c} THEN r.new_{c} ELSE t.{c} END" for c in columns)
    cursor.execute(f"UPDATE {table} AS t SET {sets}, updated_at = %s FROM undo_restore r WHERE t.id = r.id", (now,))
    cursor.execute("DROP TABLE undo_restore")


_COPY_BOOL = {True: "true", False: "false"}


def _unique_columns(conn: Connection, table: str) -> set[str] | None:
    """The columns of `table` (PostgreSQL) that some unique index covers; None when an index is on an
    expression (which columns it covers is not read here)."""
    indexes = conn.execute(text(
        "SELECT i.indexprs IS NOT NULL, ARRAY(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey)) FROM pg_index i WHERE i.indrelid = to_regclass(:t) AND i.indisunique"),
        {"t": table}).all()
    if any(expression for expression, _ in indexes):
        return None
    return {name for _, names in indexes for name in names}


def _insert_changes(conn: Connection, entries: list[tuple]) -> None:
    """Audit entries (run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at) in one
    statement per batch (psycopg2's executemany would be a round trip per entry); by COPY on PostgreSQL, which
    the server parses faster than INSERT and Python formats faster than bound parameters."""
    columns = "run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at"
    if conn.dialect.name == "postgresql":
        from lib.bulk_copy import _copy_column  # bulk_copy builds on this module

        with conn.connection.dbapi_connection.cursor() as cursor:
            for start in range(0, len(entries), 20_000):
                texts = [_copy_column(values) for values in zip(*entries[start:start + 20_000], strict=True)]
                lines = "".join(map("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n".__mod__, zip(*texts, strict=True)))
                cursor.copy_expert(f"COPY changes ({columns}) FROM STDIN", io.StringIO(lines))
        return
    conn.exec_driver_sql(f"INSERT INTO changes ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", entries)


def read_row(conn: Connection, table: str, row_id: int) -> dict | None:
    cols = ", ".join(("id",) + AUDITED_TABLES[table])
    row = conn.execute(text(f"SELECT {cols} FROM {table} WHERE id = :id"), {"id": row_id}).mappings().first()
    return dict(row) if row else None


def insert_rows(conn: Connection, table_name: str, rows: list[dict], *, run_id: int | None, user: str,
                batch: int = 5000) -> list[int]:
    """Bulk insert (batched multi-row INSERT … RETURNING) with one whole-row change each; ids in input order."""
    if not rows:
        return []
    columns = list(rows[0])
    _columns(table_name, dict.fromkeys(columns))
    now = utcnow()
    target = tables.BY_NAME[table_name]
    ids: list[int] = []
    for start in range(0, len(rows), batch):
        chunk = [{**r, "created_at": now, "updated_at": now} for r in rows[start : start + batch]]
        result = conn.execute(target.insert().returning(target.c.id, sort_by_parameter_order=True), chunk)
        chunk_ids = [r[0] for r in result]
        ids.extend(chunk_ids)
        conn.execute(tables.changes.insert(), [
            {"run_id": run_id, "table_name": table_name, "row_id": row_id, "action": "insert", "field": WHOLE_ROW,
             "old_value": None, "new_value": encode_value(values), "changed_by": user, "at": now}
            for row_id, values in zip(chunk_ids, rows[start : start + batch], strict=True)
        ])
    return ids


def update_rows(conn: Connection, table_name: str, updates: list[tuple[int, dict, dict]], *, run_id: int | None,
                user: str) -> int:
    """Bulk update: each item is (row id, current values, new values); writes and logs only real changes."""
    now = utcnow()
    log: list[dict] = []
    by_columns: dict[tuple[str, ...], list[dict]] = {}
    for row_id, current, values in updates:
        changed = {f: v for f, v in _columns(table_name, values).items() if _normal(current.get(f)) != _normal(v)}
        if not changed:
            continue
        by_columns.setdefault(tuple(sorted(changed)), []).append({"_id": row_id, **changed})
        log.extend(
            {"run_id": run_id, "table_name": table_name, "row_id": row_id, "action": "update", "field": f,
             "old_value": encode_value(current.get(f)), "new_value": encode_value(v), "changed_by": user, "at": now}
            for f, v in changed.items()
        )
    target = tables.BY_NAME[table_name]
    for cols, params in by_columns.items():
        statement = (target.update().where(target.c.id == bindparam("_id"))
                     .values({c: bindparam(c) for c in cols} | {"updated_at": bindparam("_now")}))
        conn.execute(statement, [{**p, "_now": now} for p in params])
    if log:
        conn.execute(tables.changes.insert(), log)
    return len({entry["row_id"] for entry in log})


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
    log_change(conn, run_id, table, new_id, "insert", WHOLE_ROW, None, values, user, now)
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
    stamp = "" if table in _UNSTAMPED else ", updated_at = :updated_at"
    conn.execute(
        text(f"UPDATE {table} SET {assignments}{stamp} WHERE id = :id"),
        {**{f: new for f, (_, new) in changed.items()}, "updated_at": now, "id": row_id},
    )
    for field, (old, new) in changed.items():
        log_change(conn, run_id, table, row_id, "update", field, old, new, user, now)
    return changed


def delete_row(conn: Connection, table: str, row_id: int, *, run_id: int | None, user: str) -> dict:
    """Delete and log the whole row (field by field) so undo can put it back."""
    current = read_row(conn, table, row_id)
    if current is None:
        raise LookupError(f"{table} row {row_id} does not exist")
    now = utcnow()
    conn.execute(text(f"DELETE FROM {table} WHERE id = :id"), {"id": row_id})
    old = {k: v for k, v in current.items() if k != "id"}
    log_change(conn, run_id, table, row_id, "delete", WHOLE_ROW, old, None, user, now)
    return current
