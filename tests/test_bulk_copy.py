"""bulk_copy.copy_insert_rows writes exactly what audit.insert_rows writes (rows and 'insert' changes), and undo works."""

from __future__ import annotations

import threading
import time
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import text

from lib.audit import encode_value, insert_rows
from lib.bulk_copy import copy_insert_rows
from lib.customers import create_customer
from lib.runs import start_run, undo_run

ROW_COLUMNS = ("customer_id", "external_id", "product", "sku", "quantity", "unit_price", "billing_interval",
               "start_date", "end_date", "status", "note", "source")
TRICKY = ["Tab\there", "back\\slash", "line 1\nline 2\r\nline 3", 'quote " and \\N', "100 %s %% ", "Ærø ☃ 😀",
          "\\", "", " ", "\x01bell", "{\"json\": [1]}"]


def _rows(customer_id: int, tag: str) -> list[dict]:
    rows = []
    for n, tricky in enumerate(TRICKY * 3):
        rows.append({"customer_id": customer_id, "external_id": f"{tag}-{n}" if n % 4 else None,
                     "product": tricky or "p", "sku": tricky if n % 2 else None, "quantity": n,
                     "unit_price": [Decimal("1234.50"), None, Decimal("-0.01"), Decimal("1E+2")][n % 4],
                     "billing_interval": "monthly", "start_date": date(2024, 1, 1 + n % 28),
                     "end_date": None if n % 3 else date(2030, 12, 31), "status": "active", "note": tricky,
                     "source": "test"})
    return rows


def _stored(engine, run_id: int) -> list[tuple]:
    """The run's changes and the rows they describe, without ids, in insertion order."""
    with engine.connect() as conn:
        changes = conn.execute(text("SELECT row_id, action, field, old_value, new_value, changed_by FROM changes "
                                    "WHERE run_id = :r ORDER BY id"), {"r": run_id}).all()
        out = []
        for row_id, *change in changes:
            row = conn.execute(text(f"SELECT {', '.join(ROW_COLUMNS)} FROM subscriptions WHERE id = :id"),
                               {"id": row_id}).one()
            out.append((tuple(change), tuple(row)))
    return out


def _without_tag(entries: list[tuple], tag: str) -> list[tuple]:
    return [(tuple(str(v).replace(tag, "T") if v else v for v in change), tuple(str(v).replace(tag, "T") if
             isinstance(v, str) else v for v in row)) for change, row in entries]


def test_copy_writes_what_insert_rows_writes_and_undo_removes_it(engine):
    customer = create_customer(engine, {"name": "Copy ApS"}, user="seed")
    generic = start_run(engine, "test-insert", user="anna")
    with engine.begin() as conn:
        generic_ids = insert_rows(conn, "subscriptions", _rows(customer, "G"), run_id=generic.id, user="an%na\t")
    generic.finish()
    copied = start_run(engine, "test-copy", user="anna")
    seen: list[tuple[int, int]] = []
    with engine.begin() as conn:
        copied_ids = copy_insert_rows(conn, "subscriptions", _rows(customer, "C"), run_id=copied.id,
                                      user="an%na\t", on_progress=lambda done, total: seen.append((done, total)))
    copied.finish()
    assert len(copied_ids) == len(generic_ids) == len(TRICKY) * 3
    assert copied_ids == sorted(copied_ids) and seen[-1] == (2 * len(copied_ids), 2 * len(copied_ids))
    stored = _stored(engine, copied.id)
    assert [change[0] for change, _row in stored] == ["insert"] * len(copied_ids)
    assert _without_tag(stored, "C") == _without_tag(_stored(engine, generic.id), "G")
    assert stored[0][0][3] == encode_value(_rows(customer, "C")[0])
    assert stored[3][1][10] == 'quote " and \\N' and stored[2][1][10] == "line 1\nline 2\r\nline 3"

    undo_run(engine, copied.id, user="anna", role="operator")
    with engine.connect() as conn:
        left = conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()
    assert left == len(generic_ids)


def test_copy_keeps_each_rows_key_order_and_logs_booleans_like_insert_rows(engine):
    rows = [{"name": "Første A/S", "cvr_number": None, "subscriptions_locked": True},
            {"subscriptions_locked": False, "name": "Anden\\ApS", "cvr_number": "13585628"}]
    run = start_run(engine, "test-copy", user="anna")
    with engine.begin() as conn:
        ids = copy_insert_rows(conn, "customers", rows, run_id=run.id, user="anna")
        logged = conn.execute(text("SELECT row_id, new_value FROM changes WHERE run_id = :r ORDER BY id"),
                              {"r": run.id}).all()
        stored = conn.execute(text("SELECT name, subscriptions_locked FROM customers ORDER BY id")).all()
    assert [tuple(r) for r in logged] == [(ids[0], encode_value(rows[0])), (ids[1], encode_value(rows[1]))]
    assert [(name, bool(locked)) for name, locked in stored] == [("Første A/S", True), ("Anden\\ApS", False)]


def test_copy_refuses_rows_with_other_columns(engine):
    customer = create_customer(engine, {"name": "Copy ApS"}, user="seed")
    rows = [{"customer_id": customer, "product": "a"}, {"customer_id": customer, "sku": "b"}]
    with engine.begin() as conn, pytest.raises(ValueError, match="every row must have the columns"):
        copy_insert_rows(conn, "subscriptions", rows, run_id=None, user="anna")
    with engine.begin() as conn, pytest.raises(ValueError, match="unknown column"):
        copy_insert_rows(conn, "subscriptions", [{"customer_id": customer, "price": 1}], run_id=None, user="a")
    with engine.begin() as conn:
        assert copy_insert_rows(conn, "subscriptions", [], run_id=None, user="anna") == []


def test_background_inserts_write_in_batches_and_stop_on_a_refused_batch(engine, monkeypatch):
    """Batches written on the second thread (PostgreSQL) land as insert_rows would write them; a batch the
    database refuses is raised in the producing thread, the writer stops, and the transaction rolls back."""
    from lib import bulk_copy

    monkeypatch.setattr(bulk_copy, "FIRST_BATCH_ROWS", 3)
    monkeypatch.setattr(bulk_copy, "BACKGROUND_BATCH_ROWS", 7)
    customer = create_customer(engine, {"name": "Batch ApS"}, user="seed")
    generic = start_run(engine, "test-insert", user="anna")
    with engine.begin() as conn:
        insert_rows(conn, "subscriptions", _rows(customer, "G"), run_id=generic.id, user="anna")
    generic.finish()
    rows = _rows(customer, "B")
    run = start_run(engine, "test-background", user="anna")
    with engine.begin() as conn, bulk_copy.BackgroundInserts(conn, "subscriptions", run_id=run.id, user="anna") as bg:
        for start in range(0, len(rows), 5):
            bg.put(rows[start : start + 5])
    run.finish()
    assert bg.written == len(rows) and len(bg.ids) == len(rows)
    assert _without_tag(_stored(engine, run.id), "B") == _without_tag(_stored(engine, generic.id), "G")
    assert _stored(engine, run.id)[0][0][3] == encode_value(rows[0])

    bad = [dict(r, quantity=-1) for r in _rows(customer, "X")[:4]]
    before = len(_stored(engine, run.id))
    with pytest.raises(Exception, match="quantity"):  # noqa: B017 - the driver's IntegrityError
        with engine.begin() as conn, bulk_copy.BackgroundInserts(conn, "subscriptions", run_id=run.id,
                                                             user="anna") as bg:
            bg.put(bad)
            for _ in range(50):
                bg.put(_rows(customer, "Y")[:5])
    assert not [t for t in threading.enumerate() if t.name == "bulk-insert"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions WHERE external_id LIKE 'Y-%'")).scalar_one() == 0
    assert len(_stored(engine, run.id)) == before


def test_background_inserts_stop_their_writer_when_the_last_flush_finds_a_failure(engine, monkeypatch):
    from lib import bulk_copy

    monkeypatch.setattr(bulk_copy, "FIRST_BATCH_ROWS", 3)
    customer = create_customer(engine, {"name": "Batch ApS"}, user="seed")
    bad = [dict(r, quantity=-1) for r in _rows(customer, "X")[:4]]
    with pytest.raises(Exception, match="quantity"):  # noqa: B017 - the driver's IntegrityError
        with engine.begin() as conn, bulk_copy.BackgroundInserts(conn, "subscriptions", run_id=None, user="a") as bg:
            bg.put(bad)  # a batch: refused by the database, on the writer thread (PostgreSQL)
            for _ in range(200):  # let the writer meet the refusal before the last rows are handed over
                if bg._error is not None:
                    break
                time.sleep(0.02)
            bg.put(_rows(customer, "Y")[:2])  # fewer than a batch: flushed on leaving, where the failure shows
    assert not [t for t in threading.enumerate() if t.name == "bulk-insert"]
