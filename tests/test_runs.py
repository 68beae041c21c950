"""Runs, the run lock and undo, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from lib.audit import insert_row, update_row
from lib.errors import ServiceQuotaError
from lib.runs import RunBusy, UndoRefused, get_run, job_run, list_runs, run_changes, start_run, undo_run


def add_customer(engine, name, **values):
    with engine.begin() as conn:
        return insert_row(conn, "customers", {"name": name, **values}, run_id=None, user="seed")


def customer(engine, cid):
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM customers WHERE id = :id"), {"id": cid}).mappings().first()


def test_dry_run_stores_nothing(engine):
    with job_run(engine, "demo", user="ann", dry_run=True) as run:
        assert run.id is None
    assert list_runs(engine) == []


def test_run_records_changes_and_undo_restores_them(engine):
    a = add_customer(engine, "Nordlys ApS")
    b = add_customer(engine, "Blåbær IT I/S", cvr_number="29910251")
    with job_run(engine, "demo", user="ann", dry_run=False, parameters={"x": 1}) as run:
        with engine.begin() as conn:
            update_row(conn, "customers", a, {"cvr_number": "13585628", "city": "Aarhus"}, run_id=run.id, user="ann")
            update_row(conn, "customers", b, {"cvr_number": "29910251"}, run_id=run.id, user="ann")  # no change
            new_id = insert_row(conn, "customers", {"name": "Ny Kunde A/S"}, run_id=run.id, user="ann")
        run.finish({"updated": 1, "created": 1})
    stored = get_run(engine, run.id)
    assert stored["status"] == "succeeded" and stored["stats"] == {"updated": 1, "created": 1}
    assert stored["triggered_by"] == "ann" and stored["parameters"] == {"x": 1}
    changes = run_changes(engine, run.id)
    fields = {(c["row_id"], c["field"]) for c in changes}
    assert fields == {(a, "cvr_number"), (a, "city"), (new_id, "*")}
    assert next(c for c in changes if c["row_id"] == new_id)["new_value"] == {"name": "Ny Kunde A/S"}
    assert not any(row_id == b for row_id, _ in fields)

    result = undo_run(engine, run.id, user="bob")
    assert result["fields_restored"] == 2 and result["rows_deleted"] == 1
    assert customer(engine, a)["cvr_number"] is None and customer(engine, a)["city"] is None
    assert customer(engine, new_id) is None
    assert get_run(engine, run.id)["undone_by_run_id"] == result["run_id"]
    assert get_run(engine, result["run_id"])["triggered_by"] == "bob"

    with pytest.raises(UndoRefused, match="already undone"):
        undo_run(engine, run.id, user="bob")


def test_undo_refuses_when_a_later_change_touched_the_same_field(engine):
    a = add_customer(engine, "Nordlys ApS")
    run = start_run(engine, "demo", user="ann")
    with engine.begin() as conn:
        update_row(conn, "customers", a, {"cvr_number": "13585628"}, run_id=run.id, user="ann")
    run.finish()
    later = start_run(engine, "other", user="carl")
    with engine.begin() as conn:
        update_row(conn, "customers", a, {"cvr_number": "20756438"}, run_id=later.id, user="carl")
    later.finish()
    with pytest.raises(UndoRefused) as err:
        undo_run(engine, run.id, user="bob")
    assert f"customers#{a}.cvr_number" in str(err.value)
    assert customer(engine, a)["cvr_number"] == "20756438"
    undo_run(engine, run.id, user="bob", force=True)
    assert customer(engine, a)["cvr_number"] is None


def test_second_run_of_same_kind_is_refused_while_first_runs(engine):
    first = start_run(engine, "cvr-lookup", user="ann")
    with pytest.raises(RunBusy, match=f"run {first.id}"):
        start_run(engine, "cvr-lookup", user="bob")
    other_kind = start_run(engine, "economic-relink", user="bob")
    other_kind.finish()
    first.finish()
    start_run(engine, "cvr-lookup", user="bob").finish()
    assert [r["status"] for r in list_runs(engine, kind="cvr-lookup")] == ["succeeded", "succeeded"]


def test_lock_of_a_dead_process_is_stale_and_taken_over(engine):
    first = start_run(engine, "cvr-lookup", user="ann")
    with engine.begin() as conn:  # a holder whose process no longer exists on this host
        conn.execute(text("UPDATE run_locks SET owner = :o"), {"o": f"{__import__('socket').gethostname()}:999999"})
    second = start_run(engine, "cvr-lookup", user="bob")
    assert get_run(engine, first.id)["status"] == "stale"
    second.finish()


def test_service_error_stops_run_and_keeps_stats(engine):
    with pytest.raises(ServiceQuotaError), job_run(engine, "cvr-lookup", user="ann", dry_run=False) as run:
        run.stats = {"found": 2}
        raise ServiceQuotaError("QUOTA_EXCEEDED after 5 lookups")
    stored = get_run(engine, run.id)
    assert stored["status"] == "stopped" and "QUOTA_EXCEEDED" in stored["error"] and stored["stats"] == {"found": 2}
    start_run(engine, "cvr-lookup", user="ann").finish()  # the lock was released


def test_bulk_insert_update_and_undo_of_deleted_row(engine):
    from lib.audit import delete_row, insert_rows, update_rows

    run = start_run(engine, "bulk", user="ann")
    with engine.begin() as conn:
        ids = insert_rows(conn, "customers", [{"name": f"Firma {i}", "city": "Aarhus"} for i in range(12)],
                          run_id=run.id, user="ann", batch=5)
        current = {i: {"city": "Aarhus"} for i in ids}
        changed = update_rows(conn, "customers", [(i, current[i], {"city": "Odense" if i % 2 else "Aarhus"})
                                                  for i in ids], run_id=run.id, user="ann")
        delete_row(conn, "customers", ids[0], run_id=run.id, user="ann")
    run.finish()
    assert len(ids) == 12 and changed == sum(1 for i in ids if i % 2)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 11
    first = start_run(engine, "seed", user="ann")
    with engine.begin() as conn:
        keep = insert_row(conn, "customers", {"name": "Bliver", "city": "Vejle"}, run_id=first.id, user="ann")
    first.finish()
    second = start_run(engine, "edit", user="ann")
    with engine.begin() as conn:
        update_row(conn, "customers", keep, {"city": "Kolding"}, run_id=second.id, user="ann")
        delete_row(conn, "customers", keep, run_id=second.id, user="ann")
    second.finish()
    undo_run(engine, second.id, user="ann")
    assert customer(engine, keep)["city"] == "Vejle"
    # the undo put the row back exactly as the first run left it: by value nothing stands in the way
    undo_run(engine, first.id, user="ann")
    assert customer(engine, keep) is None
