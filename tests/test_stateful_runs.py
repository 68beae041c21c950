"""Imports, customer edits and undos (with and without force) in any order, on SQLite and PostgreSQL.

A Hypothesis state machine drives the real API (Excel files made with openpyxl, lib.subscription_import,
lib.customers, lib.runs.undo_run) and checks after every step that the database equals a simple model:
the model holds the expected rows; a run's effect is the difference of the model before and after it; an
undo must either restore exactly the cells the run changed (rows it added go, rows it removed come back)
or refuse, naming exactly the cells that no longer hold what the run wrote. No run may be left running and
no lock held. Bounded for CI: STATEFUL_EXAMPLES (default 10) examples of up to 8 steps each.
"""

from __future__ import annotations

import os
import time

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test
from sqlalchemy import select, text

from lib import tables
from lib.audit import insert_row
from lib.customers import update_customer
from lib.runs import UndoRefused, undo_run
from lib.subscription_import import import_subscriptions
from tests.conftest import IN_CI
from tests.test_excel_reader import write_xlsx
from tests.test_subscription_import import HEADER

EXAMPLES = int(os.environ.get("STATEFUL_EXAMPLES", "10"))
STEPS = 8
USER = "anna@bmc.dk"
CUSTOMERS = {1001: "Nordlys Rådgivning ApS", 1002: "Østergaard & Søn A/S", 1003: "Blåbær IT I/S"}
EXTERNAL_IDS = ("600001", "600002", "600003", "600004")
FIGURES: dict[str, list] = {}


def snapshot(engine) -> dict[tuple[str, int], dict]:
    """Every customer and subscription as stored (typed), without timestamps."""
    state = {}
    with engine.connect() as conn:
        for table in (tables.customers, tables.subscriptions):
            columns = [c for c in table.c if c.name not in ("id", "created_at", "updated_at")]
            for row in conn.execute(select(table.c.id, *columns)).mappings():
                state[(table.name, row["id"])] = {c.name: row[c.name] for c in columns}
    return state


def diff(before: dict, after: dict) -> dict:
    """The rows a step changed: key → (row before or None, row after or None)."""
    return {k: (before.get(k), after.get(k)) for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


UNIQUE = {"subscriptions": [("source", "external_id")], "customers": [("cvr_number",), ("economic_customer_number",)]}


def clash(state: dict, key: tuple[str, int]) -> bool:
    """Whether the row at `key` shares a unique value with another row of `state` (the database refuses it)."""
    row = state[key]
    for columns in UNIQUE[key[0]]:
        mine = tuple(row[c] for c in columns)
        if None not in mine and any(k != key and k[0] == key[0] and tuple(v[c] for c in columns) == mine
                                    for k, v in state.items()):
            return True
    return False


class RunsAndUndo(RuleBasedStateMachine):
    runs = Bundle("runs")

    def __init__(self, engine, tmp_path):
        super().__init__()
        self.engine, self.tmp = engine, tmp_path
        with engine.begin() as conn:
            conn.execute(text("UPDATE runs SET undone_by_run_id = NULL, undoes_run_id = NULL"))
            for table in ("run_locks", "changes", "subscriptions", "customers", "runs"):
                conn.execute(text(f"DELETE FROM {table}"))
            self.customer_ids = {number: insert_row(conn, "customers", {"name": name, "economic_customer_number": number},
                                                    run_id=None, user="seed")
                                 for number, name in CUSTOMERS.items()}
        self.model = snapshot(engine)
        self.effects: dict[int, dict] = {}
        self.undone_by: dict[int, int | None] = {}
        self.undoes: dict[int, int] = {}
        self.files = 0
        FIGURES.setdefault(engine.dialect.name, []).append(0)

    def step(self):
        FIGURES[self.engine.dialect.name][-1] += 1

    def record(self, run_id: int, before: dict, after: dict) -> int:
        self.effects[run_id] = diff(before, after)
        self.undone_by[run_id] = None
        return run_id

    # --- rules ----------------------------------------------------------------------------------------------

    @rule(target=runs, rows=st.lists(st.tuples(st.sampled_from(EXTERNAL_IDS), st.integers(1, 4),
                                                st.sampled_from([100, 250])),
                                      min_size=1, max_size=3, unique_by=lambda r: r[0]))
    def import_file(self, rows):
        self.step()
        self.files += 1
        number_of = {ext: 1001 + i % 3 for i, ext in enumerate(EXTERNAL_IDS)}
        sheet = [HEADER] + [[number_of[ext], CUSTOMERS[number_of[ext]], None, ext, f"Backup {ext}", quantity, price,
                             "Måned", "01-01-2024", "Aktiv"] for ext, quantity, price in rows]
        path = write_xlsx(self.tmp / f"import-{self.files}.xlsx", {"Abonnementer": sheet})
        before = self.model
        _plan, result = import_subscriptions(self.engine, path, apply=True, user=USER, role="operator")
        after = snapshot(self.engine)
        # the model of an import: by external id, an existing subscription gets the file's quantity and price,
        # a new one is created for the customer, a locked customer's rows are skipped; nothing else changes
        by_external = {v["external_id"]: k for k, v in before.items() if k[0] == "subscriptions"}
        expected = dict(before)
        for ext, quantity, price in rows:
            customer = self.customer_ids[number_of[ext]]
            if before[("customers", customer)]["subscriptions_locked"]:
                continue
            if ext in by_external:
                key = by_external[ext]
                expected[key] = {**before[key], "quantity": quantity, "unit_price": after[key]["unit_price"]}
                assert after[key]["unit_price"] == price
            else:
                new = [k for k, v in after.items() if k[0] == "subscriptions" and v["external_id"] == ext]
                assert len(new) == 1, (ext, new)
                assert (after[new[0]]["customer_id"], after[new[0]]["quantity"], after[new[0]]["unit_price"]) == \
                    (customer, quantity, price)
                expected[new[0]] = after[new[0]]
        assert after == expected
        self.model = after
        return self.record(result["run_id"], before, after)

    @rule(target=runs, number=st.sampled_from(list(CUSTOMERS)),
          change=st.sampled_from([("city", "Aarhus"), ("city", "Odense"), ("city", None), ("phone", "70 20 30 40"),
                                  ("phone", None), ("subscriptions_locked", True), ("subscriptions_locked", False)]))
    def edit_customer(self, number, change):
        self.step()
        cid = self.customer_ids[number]
        field, value = change
        before = self.model
        changed = update_customer(self.engine, cid, {field: value}, user=USER)
        after = {**before, ("customers", cid): {**before[("customers", cid)], field: value}}
        self.model = after
        if not changed:
            assert before == after
            return multiple()
        with self.engine.connect() as conn:
            run_id = conn.execute(text("SELECT max(id) FROM runs WHERE kind = 'customer-edit'")).scalar_one()
        return self.record(run_id, before, after)

    @rule(target=runs, run=runs, force=st.booleans())
    def undo(self, run, force):
        self.step()
        before = self.model
        if self.undone_by[run] is not None:
            try:
                undo_run(self.engine, run, user=USER, force=force)
            except UndoRefused as exc:
                assert "already undone" in str(exc)
                return multiple()
            raise AssertionError(f"run {run} was undone twice")
        conflicts, restored = self.expected_undo(run)
        clashes = {f"{t}#{i}.*" for (t, i), (was, left) in self.effects[run].items()
                   if left is None and before.get((t, i)) is None and clash(restored, (t, i))}
        if (conflicts and not force) or clashes:
            try:
                undo_run(self.engine, run, user=USER, force=force)
            except UndoRefused as exc:
                named = {f"{c['table_name']}#{c['row_id']}.{c['field']}" for c in exc.conflicts}
                assert named == (conflicts if conflicts and not force else clashes)
                return multiple()
            raise AssertionError(f"undo of run {run} should have been refused over {sorted(conflicts | clashes)}")
        result = undo_run(self.engine, run, user=USER, force=force)
        self.model = restored
        undo_id = self.record(result["run_id"], before, restored)
        self.undone_by[run] = undo_id
        self.undoes[undo_id] = run
        if run in self.undoes:  # a redo: the run it undid is in effect again, and what that one undid is undone
            undid = self.undoes[run]
            self.undone_by[undid] = None
            if undid in self.undoes:
                self.undone_by[self.undoes[undid]] = undid
        return undo_id

    def expected_undo(self, run: int) -> tuple[set[str], dict]:
        """The cells that no longer hold what `run` left, and the state after undoing it (by force if need be)."""
        conflicts: set[str] = set()
        state = dict(self.model)
        for key, (was, left) in self.effects[run].items():
            table, row_id = key
            now = self.model.get(key)
            if left is None:  # the run removed the row
                if now is not None:
                    conflicts.add(f"{table}#{row_id}.*")
                    state[key] = {**now, **was}
                else:
                    state[key] = was
                continue
            if now is None:
                if was is not None:
                    conflicts.add(f"{table}#{row_id}.*")  # a row the run changed is gone
                continue
            fields = [f for f in left if was is None or was[f] != left[f]]
            conflicts |= {f"{table}#{row_id}.{f}" for f in left if now[f] != left[f]} if was is None else \
                {f"{table}#{row_id}.{f}" for f in fields if now[f] != left[f]}
            if was is None:
                del state[key]
            else:
                state[key] = {**now, **{f: was[f] for f in fields}}
        return conflicts, state

    # --- after every step -----------------------------------------------------------------------------------

    @invariant()
    def database_equals_model(self):
        assert snapshot(self.engine) == self.model

    @invariant()
    def nothing_left_running_or_locked(self):
        with self.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM runs WHERE status = 'running'")).scalar_one() == 0
            assert conn.execute(text("SELECT count(*) FROM run_locks")).scalar_one() == 0

    @invariant()
    def undone_by_names_the_undo_in_effect(self):
        with self.engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT id, undone_by_run_id FROM runs")).all())
        assert {r: stored.get(r) for r in self.undone_by} == self.undone_by


def test_runs_edits_imports_and_undos_in_any_order(engine, tmp_path):
    started = time.monotonic()
    run_state_machine_as_test(
        lambda: RunsAndUndo(engine, tmp_path),
        settings=settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, derandomize=IN_CI,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    steps = FIGURES.pop(engine.dialect.name, [])
    print(f"\nstateful runs/undo on {engine.dialect.name}: {len(steps)} examples, {sum(steps)} steps, "
          f"{time.monotonic() - started:.1f} s")
