"""Undo's bulk paths (#19): rows deleted as a set log exactly what one-by-one deletion logs, and an insert's
values read only when a later change needs them still decide conflicts; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import text

from lib.audit import (
    AUDITED_TABLES,
    delete_rows,
    encode_value,
    insert_row,
    insert_rows,
    update_row,
    update_rows,
)
from lib.runs import UndoRefused, job_run, run_changes, undo_run

AWKWARD = 'Quote " back\\slash\nnew line\ttab \x01 \x1f æøå € 🙂 </>'


def stored_rows(engine, table: str, ids: list[int]) -> dict[int, dict]:
    cols = ", ".join(AUDITED_TABLES[table])
    with engine.connect() as conn:
        return {i: dict(conn.execute(text(f"SELECT {cols} FROM {table} WHERE id = :id"), {"id": i}).mappings().one())
                for i in ids}


def logged_deletes(engine, run_id: int) -> dict[tuple[str, int], str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT table_name, row_id, old_value FROM changes WHERE run_id = :r "
                                 "AND action = 'delete' AND field = '*'"), {"r": run_id}).all()
    return {(table, row_id): old for table, row_id, old in rows}


def test_delete_rows_logs_each_row_as_encode_value_gives_it(engine):
    """The text of each whole-row entry equals encode_value of the row as stored, byte for byte, for awkward
    text, nulls, numbers, dates and booleans (PostgreSQL builds it on the server)."""
    with engine.begin() as conn:
        customer = insert_row(conn, "customers", {"name": AWKWARD, "city": "Århus", "economic_customer_number": 7,
                                                  "subscriptions_locked": True}, run_id=None, user="seed")
        plain = insert_row(conn, "customers", {"name": "Plain ApS"}, run_id=None, user="seed")
        subscriptions = insert_rows(conn, "subscriptions", [
            {"customer_id": plain, "product": AWKWARD, "note": "a\\\"b", "unit_price": Decimal("1234.50"),
             "quantity": 3, "start_date": date(2024, 2, 29), "external_id": "X-1"},
            {"customer_id": plain, "product": "Backup", "note": None, "unit_price": None, "quantity": 1,
             "start_date": None, "external_id": None},
        ], run_id=None, user="seed")
    before = {(table, row_id): encode_value(row) for table, ids in (("subscriptions", subscriptions),
                                                                    ("customers", [customer]))
              for row_id, row in stored_rows(engine, table, ids).items()}
    with job_run(engine, "bulk-delete", user="ann", dry_run=False) as run:
        with engine.begin() as conn:
            assert delete_rows(conn, "subscriptions", [*subscriptions, 999_999], run_id=run.id, user="ann") == 2
            assert delete_rows(conn, "customers", [customer], run_id=run.id, user="ann") == 1
    assert logged_deletes(engine, run.id) == before
    assert stored_rows(engine, "customers", [plain])  # untouched
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()
    assert left == 0


def test_redo_of_a_bulk_undo_puts_the_awkward_rows_back_as_they_were(engine):
    with job_run(engine, "create", user="ann", dry_run=False) as run:
        with engine.begin() as conn:
            cid = insert_row(conn, "customers", {"name": "Plain ApS"}, run_id=run.id, user="ann")
            ids = insert_rows(conn, "subscriptions", [
                {"customer_id": cid, "product": AWKWARD, "quantity": n, "unit_price": Decimal("0.10"),
                 "end_date": date(2030, 1, 1)} for n in range(3)], run_id=run.id, user="ann")
    created = stored_rows(engine, "subscriptions", ids)
    undo = undo_run(engine, run.id, user="ann")
    assert undo["rows_deleted"] == 4
    redo = undo_run(engine, undo["run_id"], user="ann")
    assert redo["rows_restored"] == 4
    assert stored_rows(engine, "subscriptions", ids) == created
    assert {c["row_id"] for c in run_changes(engine, undo["run_id"])} == {cid, *ids}


def inserted_then_updated(engine) -> tuple[int, int]:
    """A run that inserts a customer (city X) and then, in the same run, sets its city to Y."""
    with job_run(engine, "create", user="ann", dry_run=False) as run:
        with engine.begin() as conn:
            cid = insert_row(conn, "customers", {"name": "Alfa ApS", "city": "X"}, run_id=run.id, user="ann")
            update_row(conn, "customers", cid, {"city": "Y"}, run_id=run.id, user="ann")
    return run.id, cid


def edit(engine, cid: int, values: dict) -> None:
    with job_run(engine, "edit", user="bob", dry_run=False) as run:
        with engine.begin() as conn:
            update_row(conn, "customers", cid, values, run_id=run.id, user="bob")


@pytest.mark.parametrize(("later", "conflicting"), [
    ({"email": "bob@example.com"}, {"email"}),  # a field the run never set, changed since
    ({"city": "X"}, {"city"}),  # back to the insert's value: the run left Y (its later update wins)
])
def test_an_inserted_row_changed_since_is_judged_by_what_the_run_left(engine, later, conflicting):
    run_id, cid = inserted_then_updated(engine)
    edit(engine, cid, later)
    with pytest.raises(UndoRefused) as refused:
        undo_run(engine, run_id, user="ann")
    assert {c["field"] for c in refused.value.conflicts} == conflicting
    assert stored_rows(engine, "customers", [cid])[cid]["name"] == "Alfa ApS"


def test_an_inserted_row_changed_and_changed_back_is_undone(engine):
    run_id, cid = inserted_then_updated(engine)
    edit(engine, cid, {"city": "Z"})
    edit(engine, cid, {"city": "Y"})  # what the run left
    assert undo_run(engine, run_id, user="ann")["rows_deleted"] == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar_one() == 0


def by_value(name: str, value):
    if value is None:
        return None
    return Decimal(str(value)) if name == "unit_price" else bool(value) if name == "subscriptions_locked" else value


def test_fields_restored_as_a_set_come_back_with_their_types_and_are_logged(engine):
    """Numbers, money, dates, booleans and nulls the run changed return as they were; the undo logs each field
    it wrote with the run's new value as old and the run's old value as new."""
    with engine.begin() as conn:
        plain = insert_row(conn, "customers", {"name": "Plain ApS", "subscriptions_locked": True, "zip": "8000"},
                           run_id=None, user="seed")
        ids = insert_rows(conn, "subscriptions", [
            {"customer_id": plain, "product": f"Backup {n}", "quantity": n, "unit_price": Decimal("10.50"),
             "start_date": date(2024, 1, n + 1), "end_date": None, "note": AWKWARD} for n in range(3)],
            run_id=None, user="seed")
    before = {**stored_rows(engine, "subscriptions", ids), "customer": stored_rows(engine, "customers", [plain])}
    with job_run(engine, "edit", user="ann", dry_run=False) as run:
        with engine.begin() as conn:
            update_rows(conn, "subscriptions", [
                (sid, before[sid], {"quantity": n + 10, "unit_price": Decimal("12.00"), "end_date": date(2031, 12, 31),
                                    "note": None}) for n, sid in enumerate(ids)], run_id=run.id, user="ann")
            update_row(conn, "customers", plain, {"subscriptions_locked": False, "zip": None}, run_id=run.id, user="ann")
    undo = undo_run(engine, run.id, user="ann")
    assert undo["fields_restored"] == 3 * 4 + 2
    assert {**stored_rows(engine, "subscriptions", ids), "customer": stored_rows(engine, "customers", [plain])} == before
    # by value: SQLite hands back 12 for the 12.00 written, 1 for true
    done = {(c["row_id"], c["field"]): (by_value(c["field"], c["old_value"]), by_value(c["field"], c["new_value"]))
            for c in run_changes(engine, run.id)}
    undone = {(c["row_id"], c["field"]): (by_value(c["field"], c["new_value"]), by_value(c["field"], c["old_value"]))
              for c in run_changes(engine, undo["run_id"])}
    assert undone == done


def test_a_unique_value_moved_between_rows_is_given_back_in_reverse_order(engine):
    """The run took 9009 from A and gave it to B (a relink): undo gives B its own number back before A retakes
    9009, or the unique index would refuse."""
    with engine.begin() as conn:
        a = insert_row(conn, "customers", {"name": "A ApS", "economic_customer_number": 9009}, run_id=None, user="s")
        b = insert_row(conn, "customers", {"name": "B ApS", "economic_customer_number": 1009}, run_id=None, user="s")
    with job_run(engine, "relink", user="ann", dry_run=False) as run:
        with engine.begin() as conn:
            update_row(conn, "customers", a, {"economic_customer_number": None}, run_id=run.id, user="ann")
            update_row(conn, "customers", b, {"economic_customer_number": 9009}, run_id=run.id, user="ann")
    undo_run(engine, run.id, user="ann")
    numbers = {i: r["economic_customer_number"] for i, r in stored_rows(engine, "customers", [a, b]).items()}
    assert numbers == {a: 9009, b: 1009}


def test_a_forced_undo_skips_rows_deleted_since(engine):
    with engine.begin() as conn:
        ids = [insert_row(conn, "customers", {"name": f"K{n} ApS"}, run_id=None, user="s") for n in range(3)]
    with job_run(engine, "edit", user="ann", dry_run=False) as run:
        with engine.begin() as conn:
            for cid in ids:
                update_row(conn, "customers", cid, {"city": "Aarhus"}, run_id=run.id, user="ann")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM customers WHERE id = :id"), {"id": ids[1]})
    with pytest.raises(UndoRefused):
        undo_run(engine, run.id, user="ann")
    undo = undo_run(engine, run.id, user="ann", force=True)
    assert undo["fields_restored"] == 2
    assert {r["city"] for r in stored_rows(engine, "customers", [ids[0], ids[2]]).values()} == {None}


@pytest.mark.parametrize("value", [
    AWKWARD, "", "\u2028", 0, -5, 10**30, True, False, Decimal("12.00"), Decimal("-0.5"), Decimal("1E+3"),
    date(2024, 2, 29), datetime(2024, 1, 1, 12, 0, 0, 5), datetime(2024, 1, 1), 1.5, [1, "a"], {"a": Decimal("1.10")},
])
def test_encode_value_gives_what_json_dumps_gives(value):
    """The audit log's text for a field's value, whichever way encode_value takes, is json.dumps' own."""
    plain = {k: str(v) if isinstance(v, Decimal) else v for k, v in value.items()} if isinstance(value, dict) else (
        str(value) if isinstance(value, Decimal) else value.isoformat() if isinstance(value, date) else value)
    assert encode_value(value) == json.dumps(plain, ensure_ascii=False)
