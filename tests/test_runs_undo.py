"""Undo judged by values, in one transaction; redo; the issue's sequences (#15), on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from lib.cli import main
from lib.customers import create_customer, get_customer, update_customer
from lib.runs import UndoRefused, get_run, list_runs, undo_conflicts, undo_run
from lib.subscription_import import import_subscriptions
from tests.test_excel_reader import write_xlsx
from tests.test_subscription_import import ADMIN, HEADER, seed_sample_customers


def rows_of(engine) -> dict:
    """Every audited table's rows, by id: the state undo must restore exactly."""
    with engine.connect() as conn:
        return {t: {r["id"]: dict(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id")).mappings()}
                for t in ("customers", "subscriptions")}


def without_times(state: dict) -> dict:
    return {t: {i: {k: v for k, v in r.items() if k not in ("created_at", "updated_at")} for i, r in rows.items()}
            for t, rows in state.items()}


def export(tmp_path, name: str, quantities: list[int]) -> str:
    rows = [HEADER] + [[1001, "Nordlys", None, f"60000{i}", f"Backup {i}", q, 100, "Måned", "01-01-2024", "Aktiv"]
                       for i, q in enumerate(quantities)]
    return write_xlsx(tmp_path / name, {"Abonnementer": rows})


def test_import_x_import_changed_x_undo_b_undo_a(engine, tmp_path):
    """The issue's sequence: undo B, then undo A. Before: 'later changes touched 4 of its fields'."""
    seed_sample_customers(engine)
    before = without_times(rows_of(engine))
    _, a = import_subscriptions(engine, export(tmp_path, "x.xlsx", [1, 1, 1, 1]), apply=True, **ADMIN)
    after_a = without_times(rows_of(engine))
    _, b = import_subscriptions(engine, export(tmp_path, "x2.xlsx", [2, 3, 4, 5]), apply=True, **ADMIN)
    assert (b["created"], b["updated"]) == (0, 4)
    undo_run(engine, b["run_id"], user=ADMIN["user"], role="operator")
    assert without_times(rows_of(engine)) == after_a
    undo_run(engine, a["run_id"], user=ADMIN["user"], role="operator")
    assert without_times(rows_of(engine)) == before


def test_undo_a_is_refused_while_b_is_in_effect_naming_the_fields(engine, tmp_path):
    seed_sample_customers(engine)
    _, a = import_subscriptions(engine, export(tmp_path, "x.xlsx", [1, 1]), apply=True, **ADMIN)
    _, b = import_subscriptions(engine, export(tmp_path, "x2.xlsx", [2, 1]), apply=True, **ADMIN)
    first = min(s["id"] for s in _subs(engine))
    with pytest.raises(UndoRefused) as refused:
        undo_run(engine, a["run_id"], user=ADMIN["user"], role="operator")
    assert f"subscriptions#{first}.quantity" in str(refused.value) and "1 of its fields" in str(refused.value)
    assert refused.value.conflicts[0]["current"] == 2 and refused.value.conflicts[0]["run_value"] == 1
    assert get_run(engine, a["run_id"])["undone_by_run_id"] is None
    assert [r["kind"] for r in list_runs(engine)].count("undo") == 0  # a refusal records no run
    undo_run(engine, a["run_id"], user=ADMIN["user"], role="operator", force=True)
    assert _subs(engine) == []
    assert get_run(engine, b["run_id"])["undone_by_run_id"] is None


def _subs(engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT id, quantity FROM subscriptions ORDER BY id")).mappings()]


def test_a_later_change_that_wrote_the_same_value_is_no_conflict(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="ann")
    update_customer(engine, cid, {"city": "Aarhus"}, user="ann")
    first = list_runs(engine)[0]["run_id"]
    update_customer(engine, cid, {"city": "Odense"}, user="bob")
    update_customer(engine, cid, {"city": "Aarhus"}, user="carl")  # back to what ann's run wrote
    assert undo_conflicts(engine, first) == []
    undo_run(engine, first, user="ann")
    assert get_customer(engine, cid)["city"] is None


def test_customer_edits_undone_in_any_order_the_values_allow(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="ann")
    create_run = list_runs(engine)[0]["run_id"]
    update_customer(engine, cid, {"city": "Aarhus", "zip": "8000"}, user="ann")
    a = list_runs(engine)[0]["run_id"]
    update_customer(engine, cid, {"city": "Odense"}, user="ann")
    b = list_runs(engine)[0]["run_id"]
    with pytest.raises(UndoRefused, match=rf"customers#{cid}\.city"):
        undo_run(engine, a, user="ann")
    with pytest.raises(UndoRefused, match=rf"customers#{cid}\.city"):
        undo_run(engine, create_run, user="ann")  # deleting the row would lose city and zip
    undo_run(engine, b, user="ann")
    undo_run(engine, a, user="ann")
    assert get_customer(engine, cid)["city"] is None and get_customer(engine, cid)["zip"] is None
    undo_run(engine, create_run, user="ann")
    assert get_customer(engine, cid) is None


def test_an_undo_can_be_undone_redo_and_undone_again(engine, tmp_path):
    seed_sample_customers(engine)
    before = without_times(rows_of(engine))
    _, a = import_subscriptions(engine, export(tmp_path, "x.xlsx", [1, 2]), apply=True, **ADMIN)
    after_a = without_times(rows_of(engine))
    undo = undo_run(engine, a["run_id"], user=ADMIN["user"], role="operator")
    assert get_run(engine, a["run_id"])["undone_by_run_id"] == undo["run_id"]
    assert get_run(engine, undo["run_id"])["undoes_run_id"] == a["run_id"]
    redo = undo_run(engine, undo["run_id"], user=ADMIN["user"], role="operator")
    assert redo["rows_restored"] == 2
    restored = without_times(rows_of(engine))
    assert restored == after_a  # the same rows, with the same ids
    assert get_run(engine, a["run_id"])["undone_by_run_id"] is None  # A is in effect again
    assert get_run(engine, undo["run_id"])["undone_by_run_id"] == redo["run_id"]
    with pytest.raises(UndoRefused, match="already undone"):
        undo_run(engine, undo["run_id"], user=ADMIN["user"], role="operator")
    again = undo_run(engine, a["run_id"], user=ADMIN["user"], role="operator")
    assert without_times(rows_of(engine)) == before
    assert get_run(engine, a["run_id"])["undone_by_run_id"] == again["run_id"]
    # undoing the redo brings back the first undo's effect: A counts as undone by it again
    undo_run(engine, again["run_id"], user=ADMIN["user"], role="operator")
    undo_run(engine, redo["run_id"], user=ADMIN["user"], role="operator")
    assert without_times(rows_of(engine)) == before
    assert get_run(engine, a["run_id"])["undone_by_run_id"] == undo["run_id"]
    assert get_run(engine, undo["run_id"])["undone_by_run_id"] is None


def test_undo_refused_on_the_command_line_prints_conflicts_and_error(engine, capsys):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="cli")
    update_customer(engine, cid, {"city": "Aarhus"}, user="cli")
    first = list_runs(engine)[0]["run_id"]
    update_customer(engine, cid, {"city": "Odense"}, user="anna")
    assert main(["undo", str(first), "--json"]) == 2
    out, err = capsys.readouterr()
    payload = json.loads(out)
    assert payload["error"] == err.strip().splitlines()[-1].removeprefix("error: ")
    conflict = payload["conflicts"][0]
    assert (conflict["field"], conflict["current"], conflict["run_value"], conflict["changed_by"]) == \
        ("city", "Odense", "Aarhus", "anna")
    assert get_customer(engine, cid)["city"] == "Odense"


def test_module_settings_runs_undo_in_sequence_too(engine):
    """An audited table without typed metadata (module_settings) is judged by value as text."""
    from lib.audit import insert_row, update_row
    from lib.runs import job_run

    with job_run(engine, "module-settings", user="ann", dry_run=False) as first, engine.begin() as conn:
        sid = insert_row(conn, "module_settings", {"module": "demo", "key": "limit", "value": "10"},
                         run_id=first.id, user="ann")
    with job_run(engine, "module-settings", user="ann", dry_run=False) as second, engine.begin() as conn:
        update_row(conn, "module_settings", sid, {"value": "20"}, run_id=second.id, user="ann")
    with pytest.raises(UndoRefused, match=rf"module_settings#{sid}\.value"):
        undo_run(engine, first.id, user="ann")
    undo_run(engine, second.id, user="ann")
    undo_run(engine, first.id, user="ann")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM module_settings")).scalar_one() == 0


def test_redo_refused_when_the_same_subscription_was_imported_again(engine, tmp_path):
    """Found by the state machine: import X, undo, import X again, undo the undo → the row cannot come back."""
    seed_sample_customers(engine)
    _, a = import_subscriptions(engine, export(tmp_path, "x.xlsx", [1]), apply=True, **ADMIN)
    undo = undo_run(engine, a["run_id"], user=ADMIN["user"], role="operator")
    _, again = import_subscriptions(engine, export(tmp_path, "x.xlsx", [1]), apply=True, **ADMIN)
    assert again["created"] == 1
    state = rows_of(engine)
    for force in (False, True):
        with pytest.raises(UndoRefused, match="cannot be put back because another row now holds the same unique"):
            undo_run(engine, undo["run_id"], user=ADMIN["user"], role="operator", force=force)
    assert rows_of(engine) == state
    assert get_run(engine, undo["run_id"])["undone_by_run_id"] is None
    assert [r["status"] for r in list_runs(engine, kind="undo")][:2] == ["failed", "failed"]
