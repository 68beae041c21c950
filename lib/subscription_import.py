"""Import BMC Office subscriptions: plan what each row would do (the preview), then apply the plan as one run.

read (lib.excel_reader) → validate (lib.subscription_rows) → plan (here) → apply (here, one transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from itertools import repeat
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Engine

from lib import tables
from lib.audit import update_rows
from lib.bulk_copy import BackgroundInserts, copy_insert_rows
from lib.company_names import normalize_company_name
from lib.db import lost_connection, write_transaction
from lib.errors import DatabaseLost, InputError
from lib.roles import Actor
from lib.runs import Run
from lib.subscription_rows import (
    CENT,
    SUBSCRIPTION_FIELDS,
    OpenedExport,
    ParsedExport,
    SubscriptionRow,
    danish_date,
    iter_rows,
)

SOURCE = "bmc-office"
OUTCOMES = ("create", "update", "unchanged", "skipped_locked", "unmatched", "rejected")
COUNT_KEYS = {"create": "created", "update": "updated", "unchanged": "unchanged", "skipped_locked": "skipped_locked",
              "unmatched": "unmatched", "rejected": "rejected"}
DEFAULTS = {"external_id": None, "sku": None, "unit_price": None, "billing_interval": "monthly", "end_date": None,
            "status": "active", "note": None}
WRITE_BATCH = 5000
FIRST_CHUNK_ROWS = 1000  # validated and written first, so the server starts inserting early
ONE_PASS_CHUNK_ROWS = 2500

ProgressCallback = Callable[[int, int, str], None]


class PlanOutdated(InputError):
    """Customers or subscriptions changed between the preview and the apply."""


@dataclass(slots=True)
class PlannedRow:
    """What one data row does: its outcome, the customer and subscription, and the values to write."""

    row: int
    outcome: str
    customer_id: int | None = None
    subscription_id: int | None = None
    values: dict = field(default_factory=dict)
    current: dict | None = None
    message: str | None = None
    source: SubscriptionRow | None = None

    @property
    def changes(self) -> dict[str, tuple]:
        if self.outcome != "update" or self.current is None:
            return {}
        return {f: (self.current.get(f), v) for f, v in self.values.items()}


@dataclass
class ImportPlan:
    """The preview: every row's outcome. Applying it writes exactly the create and update rows."""

    export: ParsedExport
    items: list[PlannedRow]
    customer_names: dict[int, str]
    snapshot: tuple
    tally: PlanTally | None = None  # the one pass counts as it goes and keeps only errors and updates in `items`

    @property
    def row_count(self) -> int:
        return self.tally.rows if self.tally is not None else len(self.items)

    def counts(self) -> dict[str, int]:
        if self.tally is not None:
            return dict(self.tally.counts)
        out = dict.fromkeys(COUNT_KEYS.values(), 0)
        for item in self.items:
            out[COUNT_KEYS[item.outcome]] += 1
        return out

    def errors(self) -> list[dict]:
        return [{"row": i.row, "message": i.message} for i in self.items if i.outcome in ("rejected", "unmatched")]

    def summary(self, run_id: int | None = None, dry_run: bool = True) -> dict:
        """The command's JSON object (interface.md): counts, run_id, dry_run and errors."""
        counts = self.counts()
        return {"run_id": run_id, "dry_run": dry_run, "rows": self.row_count, "created": counts["created"],
                "updated": counts["updated"], "unchanged": counts["unchanged"],
                "skipped_locked": counts["skipped_locked"], "unmatched": counts["unmatched"],
                "errors": self.errors()}

    def stats(self) -> dict:
        return {"file": self.export.file_name, "sheet": self.export.sheet, "rows": self.row_count, **self.counts()}

    def table(self, outcomes: set[str] | None = None, limit: int | None = None) -> list[dict]:
        """Display rows of the plan (optionally only some outcomes), one dict per data row."""
        out: list[dict] = []
        for item in self.items:
            if outcomes is not None and item.outcome not in outcomes:
                continue
            out.append(display_row(item, self.customer_names))
            if limit is not None and len(out) >= limit:
                break
        return out


def display_row(item: PlannedRow, customer_names: dict[int, str]) -> dict:
    """One planned row as the page's table shows it."""
    src = item.source
    values = src.values if src else {}
    change_text = ", ".join(f"{f}: {_show(old)} → {_show(new)}" for f, (old, new) in item.changes.items())
    return {
        "row": item.row, "outcome": item.outcome,
        "customer": customer_names.get(item.customer_id) if item.customer_id else (
            src.customer_name if src else None),
        "subscription id": values.get("external_id"), "product": values.get("product"),
        "quantity": values.get("quantity"), "unit price": values.get("unit_price"),
        "interval": values.get("billing_interval"), "start date": values.get("start_date"),
        "status": values.get("status"), "changes": change_text or None, "message": item.message,
    }


PREVIEW_ROWS = 1000  # rows of each outcome a stored preview keeps for the page (and rejected/unmatched rows)


class PlanTally:
    """What a streamed plan keeps: the counts, and the first `keep` rows of each outcome and of the errors, so
    memory follows the chunk, not the file (the error report files get every error: lib.import_report)."""

    def __init__(self, customer_names: dict[int, str] | None = None, keep: int = PREVIEW_ROWS):
        self.customer_names = customer_names if customer_names is not None else {}
        self.keep = keep
        self.rows = 0
        self.counts = dict.fromkeys(COUNT_KEYS.values(), 0)
        self.shown: dict[str, list[dict]] = {o: [] for o in OUTCOMES}
        self.errors: list[dict] = []

    def add(self, planned: list[PlannedRow]) -> None:
        counts, shown, keep = self.counts, self.shown, self.keep
        self.rows += len(planned)
        for item in planned:
            outcome = item.outcome
            counts[COUNT_KEYS[outcome]] += 1
            if keep and len(shown[outcome]) < keep:
                shown[outcome].append(display_row(item, self.customer_names))
            if outcome in ("rejected", "unmatched") and len(self.errors) < keep:
                self.errors.append({"row": item.row, "message": item.message})

    @property
    def error_count(self) -> int:
        return self.counts["rejected"] + self.counts["unmatched"]

    def table(self) -> list[dict]:
        """The rows kept, in file order."""
        return sorted((r for rows in self.shown.values() for r in rows), key=lambda r: r["row"])

    def stats(self, file_name: str, sheet: str) -> dict:
        return {"file": file_name, "sheet": sheet, "rows": self.rows, **self.counts}


def _show(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, date):
        return danish_date(value)
    return str(value)


# --- customers --------------------------------------------------------------------------------------------------

class CustomerIndex:
    """Every customer, loaded once, looked up by e-conomic number, CVR and normalised name."""

    def __init__(self, conn: Connection):
        c = tables.customers
        rows = conn.execute(select(c.c.id, c.c.name, c.c.cvr_number, c.c.economic_customer_number,
                                   c.c.subscriptions_locked)).all()
        self.names = {cid: name for cid, name, _cvr, _number, _locked in rows}
        self.cvr_of = {cid: cvr for cid, _name, cvr, _number, _locked in rows}
        self.number_of = {cid: number for cid, _name, _cvr, number, _locked in rows}
        self.locked = {cid for cid, _name, _cvr, _number, locked in rows if locked}
        self.by_number = {number: cid for cid, _name, _cvr, number, _locked in rows if number is not None}
        self.by_cvr = {cvr: cid for cid, _name, cvr, _number, _locked in rows if cvr}
        self._by_name: dict[str, list[int]] | None = None

    def by_name(self, name: str) -> list[int]:
        if self._by_name is None:  # most exports carry numbers; normalise 20,000 names only when needed
            index: dict[str, list[int]] = {}
            for cid, cname in self.names.items():
                key = normalize_company_name(cname)
                if key:
                    index.setdefault(key, []).append(cid)
            self._by_name = index
        key = normalize_company_name(name)
        return self._by_name.get(key, []) if key else []

    def _contradiction(self, cid: int, row: SubscriptionRow) -> str | None:
        stored_cvr, stored_number = self.cvr_of[cid], self.number_of[cid]
        if row.cvr and stored_cvr and stored_cvr != row.cvr:
            return f"CVR {row.cvr} contradicts customer {self.names[cid]!r}, whose CVR is {stored_cvr}"
        if row.customer_number is not None and stored_number is not None and stored_number != row.customer_number:
            return (f"customer number {row.customer_number} contradicts customer {self.names[cid]!r}, "
                    f"whose e-conomic number is {stored_number}")
        return None

    def match(self, row: SubscriptionRow) -> tuple[int | None, str | None, str | None]:
        """(customer id, None, None), or (None, 'unmatched' | 'rejected', reason). Never guesses."""
        by_number = self.by_number.get(row.customer_number) if row.customer_number is not None else None
        by_cvr = self.by_cvr.get(row.cvr) if row.cvr else None
        if by_number is not None and by_cvr is not None and by_number != by_cvr:
            return None, "rejected", (f"customer number {row.customer_number} is {self.names[by_number]!r} but "
                                      f"CVR {row.cvr} is {self.names[by_cvr]!r}")
        found = by_number if by_number is not None else by_cvr
        if found is None and row.customer_name:
            candidates = self.by_name(row.customer_name)
            if len(candidates) > 1:
                return None, "unmatched", (f"customer name {row.customer_name!r} fits {len(candidates)} customers "
                                           "in the Hub; add the customer number or CVR")
            found = candidates[0] if candidates else None
        if found is None:
            return None, "unmatched", f"no customer in the Hub has {_keys(row)}"
        problem = self._contradiction(found, row)
        if problem:
            return None, "rejected", problem
        return found, None, None


def _keys(row: SubscriptionRow) -> str:
    keys = []
    if row.customer_number is not None:
        keys.append(f"customer number {row.customer_number}")
    if row.cvr:
        keys.append(f"CVR {row.cvr}")
    if row.customer_name:
        keys.append(f"the name {row.customer_name!r}")
    return " or ".join(keys)


# --- subscriptions ----------------------------------------------------------------------------------------------

_SUB_COLUMNS = ("id", "customer_id", *SUBSCRIPTION_FIELDS, "source")


@lru_cache(maxsize=65536)  # products and SKUs repeat across thousands of subscriptions
def _fold(text: str | None) -> str:
    return " ".join(text.casefold().split()) if text else ""


class SubscriptionIndex:
    """Existing subscriptions by (source, external id) and by (customer, SKU or product, start date)."""

    def __init__(self, conn: Connection):
        s = tables.subscriptions
        self.by_external: dict[str, dict] = {}
        self.by_natural: dict[tuple, list[dict]] = {}
        result = conn.execute(select(*(s.c[c] for c in _SUB_COLUMNS))).all()  # one fetch, not one per row
        for sub in map(dict, map(zip, repeat(_SUB_COLUMNS), result)):
            if sub["external_id"] is not None and sub["source"] == SOURCE:
                self.by_external[sub["external_id"]] = sub
            for key in _natural_keys(sub["customer_id"], sub["sku"], sub["product"], sub["start_date"]):
                self.by_natural.setdefault(key, []).append(sub)

    def find_natural(self, customer_id: int, values: dict) -> tuple[list[dict], tuple]:
        """For a row without a subscription id: the existing subscriptions of this customer with its SKU (else
        product) and start date, and that identity key. (A row with an id is found in `by_external`.)"""
        keys = _natural_keys(customer_id, values.get("sku"), values.get("product"), values.get("start_date"))
        for key in keys:
            found = self.by_natural.get(key)
            if found:
                return found, key
        return [], keys[0]


def _natural_keys(customer_id: int, sku: str | None, product: str | None, start: date | None) -> list[tuple]:
    keys = []
    if sku:
        keys.append((customer_id, "sku", _fold(sku), start))
    if product:
        keys.append((customer_id, "product", _fold(product), start))
    return keys


def _same(old, new) -> bool:
    if old.__class__ is new.__class__ and old == new:  # the usual case in a re-import: nothing changed
        return True
    if isinstance(new, Decimal) or isinstance(old, Decimal | float):
        if old is None or new is None:
            return old is new
        return Decimal(str(old)).quantize(CENT) == Decimal(str(new)).quantize(CENT)
    if isinstance(old, str) and isinstance(new, date):
        return old[:10] == new.isoformat()
    return old == new


def _snapshot(conn: Connection) -> tuple:
    s, c = tables.subscriptions, tables.customers
    subs = conn.execute(select(func.count(), func.max(s.c.id), func.max(s.c.updated_at))).one()
    customers = conn.execute(select(func.count(), func.max(c.c.id), func.max(c.c.updated_at))).one()
    return tuple(str(v) for v in (*subs, *customers))


# --- plan -------------------------------------------------------------------------------------------------------

def plan_import(engine: Engine, export: ParsedExport) -> ImportPlan:
    """Decide every row's outcome against the database as it is now; writes nothing."""
    with engine.connect() as conn:
        snapshot = _snapshot(conn)
        customers = CustomerIndex(conn)
        subscriptions = SubscriptionIndex(conn)
        items = _plan_rows(export, customers, subscriptions)
    return ImportPlan(export, items, customers.names, snapshot)


def preview_import(engine: Engine, opened: OpenedExport) -> ImportPlan:
    """The command line's preview: the counts and the rejected and unmatched rows (what its JSON lists), planned
    a chunk at a time, so memory follows the chunk, not the file. Such a plan only reports: `plan_import` makes
    one that `apply_plan` can write."""
    table = opened.table
    items: list[PlannedRow] = []
    tally = PlanTally(keep=0)
    try:
        with engine.connect() as conn:
            snapshot = _snapshot(conn)
            customers = CustomerIndex(conn)
            planner = Planner(customers, SubscriptionIndex(conn), set(table.mapping))
        for chunk in iter_rows(table, ONE_PASS_CHUNK_ROWS):
            _keep(planner.plan(chunk), items, tally, updates=False)
    finally:
        table.close()
    return ImportPlan(opened.parsed([]), items, customers.names, snapshot, tally)


def _plan_rows(export: ParsedExport, customers: CustomerIndex, subscriptions: SubscriptionIndex) -> list[PlannedRow]:
    return Planner(customers, subscriptions, export.fields_present).plan(export.rows)


class Planner:
    """Decides each row's outcome, chunk by chunk; remembers the rows seen so a repeated row is rejected."""

    def __init__(self, customers: CustomerIndex, subscriptions: SubscriptionIndex, fields_present: set[str]):
        self.customers = customers
        self.subscriptions = subscriptions
        self.present = [f for f in SUBSCRIPTION_FIELDS if f in fields_present]
        self.seen: dict[tuple, int] = {}

    def plan(self, rows: list[SubscriptionRow]) -> list[PlannedRow]:
        items: list[PlannedRow] = []
        customers, subscriptions, seen, present = self.customers, self.subscriptions, self.seen, self.present
        by_number, by_external, locked = customers.by_number, subscriptions.by_external, customers.locked
        for row in rows:
            if row.error:
                items.append(PlannedRow(row.row, "rejected", message=row.error, source=row))
                continue
            # the usual row: a known customer number and no CVR to cross-check, so match() could only agree
            customer_id = by_number.get(row.customer_number) if row.cvr is None else None
            if customer_id is None:
                customer_id, outcome, reason = customers.match(row)
                if customer_id is None:
                    items.append(PlannedRow(row.row, outcome, message=reason, source=row))
                    continue
            external_id = row.values.get("external_id")
            if external_id:  # the identity is the id itself (natural keys are tuples: they never clash)
                identity = external_id
                existing = by_external.get(external_id)
            else:
                found, identity = subscriptions.find_natural(customer_id, row.values)
                if len(found) > 1 and identity not in seen:
                    seen[identity] = row.row
                    items.append(PlannedRow(row.row, "rejected", customer_id, source=row,
                                            message=f"{len(found)} existing subscriptions of this customer have "
                                                    "this product and start date; add a subscription id"))
                    continue
                existing = found[0] if found else None
            if identity in seen:
                items.append(PlannedRow(row.row, "rejected", customer_id, source=row,
                                        message=f"the same subscription as row {seen[identity]}"))
                continue
            seen[identity] = row.row
            if customer_id in locked or (existing is not None and existing["customer_id"] in locked):
                items.append(PlannedRow(row.row, "skipped_locked", customer_id, existing["id"] if existing else None,
                                        message=f"{customers.names[customer_id]!r} has its subscriptions locked",
                                        source=row))
                continue
            if existing is None:
                values = {"customer_id": customer_id, **DEFAULTS, **row.values, "source": SOURCE}
                items.append(PlannedRow(row.row, "create", customer_id, None, values, None, None, row))
                continue
            changed = {} if existing["customer_id"] == customer_id else {"customer_id": customer_id}
            values = row.values
            for f in present:
                new, old = values[f], existing.get(f)
                if old.__class__ is new.__class__ and old == new:  # the usual case, without a call
                    continue
                if (new or f != "external_id") and not _same(old, new):  # no id in the row never clears one
                    changed[f] = new
            if changed:
                items.append(PlannedRow(row.row, "update", customer_id, existing["id"], changed, existing,
                                        source=row))
            else:
                items.append(PlannedRow(row.row, "unchanged", customer_id, existing["id"], source=row))
        return items


# --- apply ------------------------------------------------------------------------------------------------------

def _updates(items: list[PlannedRow]) -> list[tuple[int, dict, dict]]:
    """The plan's updates as `update_rows` takes them: (subscription id, current values, changed values)."""
    return [(i.subscription_id, i.current, i.values) for i in items if i.outcome == "update"]


def _update_in_batches(conn: Connection, updates: list[tuple[int, dict, dict]], *, run_id: int,
                       user: str) -> Iterator[int]:
    """Write the updates in batches; yields how many are written after each batch."""
    for start in range(0, len(updates), WRITE_BATCH):
        update_rows(conn, "subscriptions", updates[start : start + WRITE_BATCH], run_id=run_id, user=user)
        yield min(start + WRITE_BATCH, len(updates))


def write_planned_chunk(conn: Connection, planned: list[PlannedRow], run: Run) -> tuple[int, int]:
    """Write one planned chunk (creates by COPY, updates in batches) in the caller's transaction;
    returns (created, updated)."""
    creates = [i.values for i in planned if i.outcome == "create"]
    if creates:
        copy_insert_rows(conn, "subscriptions", creates, run_id=run.id, user=run.user)
    updates = _updates(planned)
    for _ in _update_in_batches(conn, updates, run_id=run.id, user=run.user):
        pass
    return len(creates), len(updates)


def check_plan_current(engine: Engine, plan: ImportPlan) -> None:
    """PlanOutdated when customers or subscriptions changed since the preview (checked again while writing)."""
    with engine.connect() as conn:
        if _snapshot(conn) != plan.snapshot:
            raise PlanOutdated("customers or subscriptions changed since the preview; preview the file again")


def write_plan(engine: Engine, plan: ImportPlan, run: Run, *, user: str,
               on_progress: ProgressCallback | None = None) -> None:
    """Write the plan's creates and updates in one transaction, for `run` (the job runner's)."""
    creates = [i.values for i in plan.items if i.outcome == "create"]
    updates = _updates(plan.items)
    total = len(creates) + len(updates)
    done = 0

    def report(message: str) -> None:
        if on_progress:
            on_progress(done, total, message)

    report("checking that nothing changed since the preview")
    with write_transaction(engine) as conn:
        if _snapshot(conn) != plan.snapshot:
            raise PlanOutdated("customers or subscriptions changed since the preview; preview the file again")

        def created(sent: int, steps: int) -> None:
            nonlocal done
            done = sent * len(creates) // steps
            report(f"created {done:,} of {len(creates):,} subscriptions")

        copy_insert_rows(conn, "subscriptions", creates, run_id=run.id, user=user, on_progress=created,
                         batch=WRITE_BATCH)
        done = len(creates)
        for updated in _update_in_batches(conn, updates, run_id=run.id, user=user):
            done = len(creates) + updated
            report(f"updated {updated:,} of {len(updates):,} subscriptions")
    report("done")


def write_in_one_pass(engine: Engine, opened: OpenedExport, run: Run, *, user: str,
                      on_progress: ProgressCallback | None = None) -> ImportPlan:
    """Validate, plan and write an opened export chunk by chunk, for `run`: in one transaction on PostgreSQL,
    committing each chunk on SQLite (`_one_pass_committing_chunks`).

    The plan is made inside the writing transaction, so nothing can change between plan and write. On
    PostgreSQL each chunk's new subscriptions are written on a second thread (`BackgroundInserts`) while
    the next chunk is validated and planned: the server's inserting and Python's validating overlap.
    """
    table = opened.table
    total = table.height
    items: list[PlannedRow] = []
    tally = PlanTally(keep=0)

    def report(done: int, message: str) -> None:
        if on_progress:
            on_progress(done, total, message)

    try:
        if engine.dialect.name == "sqlite":  # commit chunk by chunk: other writers get in between
            snapshot, customers = _one_pass_committing_chunks(engine, run, opened, items, tally, report)
        else:
            with write_transaction(engine) as conn:
                snapshot = _snapshot(conn)
                customers = CustomerIndex(conn)
                planner = Planner(customers, SubscriptionIndex(conn), set(table.mapping))
                with BackgroundInserts(conn, "subscriptions", run_id=run.id, user=user) as inserts:
                    for chunk in iter_rows(table, ONE_PASS_CHUNK_ROWS, first_chunk=FIRST_CHUNK_ROWS):
                        planned = planner.plan(chunk)
                        creates = [i.values for i in planned if i.outcome == "create"]
                        if creates:
                            inserts.put(creates)
                        _keep(planned, items, tally)
                        report(tally.rows, f"planned {tally.rows:,} rows, {inserts.written:,} subscriptions created so far")
                updates = _updates(items)
                for updated in _update_in_batches(conn, updates, run_id=run.id, user=user):
                    report(total, f"updated {updated:,} of {len(updates):,} subscriptions")
    except Exception as exc:
        table.close()
        if not lost_connection(engine, exc):
            raise
        raise _lost(run, opened, tally.rows, exc) from exc
    report(total, "done")
    return ImportPlan(opened.parsed([]), items, customers.names, snapshot, tally)  # the rows are not kept


def _keep(planned: list[PlannedRow], items: list[PlannedRow], tally: PlanTally, updates: bool = True) -> None:
    """What the one pass keeps of a written chunk: its counts, and the rejected and unmatched rows' outcome and
    message (the summary's errors), not the rows created or unchanged, so memory follows the chunk, not the
    file. Updates stay whole (unless `updates` is false): they are written at the end on PostgreSQL."""
    tally.add(planned)
    for item in planned:
        if item.outcome == "update" and updates:
            items.append(item)
        elif item.outcome in ("rejected", "unmatched"):
            items.append(PlannedRow(item.row, item.outcome, item.customer_id, item.subscription_id,
                                    message=item.message))


def _one_pass_committing_chunks(engine: Engine, run, opened: OpenedExport, items: list[PlannedRow],
                                tally: PlanTally, report: Callable[[int, str], None]) -> tuple[tuple, CustomerIndex]:
    """The one pass on SQLite: each chunk's creates and updates in their own write transaction, so the write
    lock is free between chunks (a customer edit waits for one chunk, not the whole file). The indexes are
    read once, in the first chunk's transaction. A failure keeps the chunks committed before it (the run's
    statistics say how many; undo reverts them)."""
    table = opened.table
    planner: Planner | None = None
    customers: CustomerIndex | None = None
    snapshot: tuple = ()
    written = {"created": 0, "updated": 0}
    for chunk in iter_rows(table, ONE_PASS_CHUNK_ROWS, first_chunk=FIRST_CHUNK_ROWS):
        with write_transaction(engine) as conn:
            if planner is None:
                snapshot = _snapshot(conn)
                customers = CustomerIndex(conn)
                planner = Planner(customers, SubscriptionIndex(conn), set(table.mapping))
            planned = planner.plan(chunk)
            created, updated = write_planned_chunk(conn, planned, run)
        _keep(planned, items, tally)
        written["created"] += created
        written["updated"] += updated
        run.stats = {"file": opened.file_name, "sheet": table.sheet, "rows_committed": tally.rows, **written}
        report(tally.rows, f"{tally.rows:,} rows planned and committed: {written['created']:,} created, "
                           f"{written['updated']:,} updated")
    if planner is None:  # no data rows after all: still read the indexes for the plan's names
        with engine.connect() as conn:
            snapshot, customers = _snapshot(conn), CustomerIndex(conn)
    return snapshot, customers


def _lost(run, opened: OpenedExport, planned: int, exc: Exception) -> DatabaseLost:
    """The one pass is one transaction: a lost connection keeps nothing. The run (failed) and the command's
    JSON say so: zero counts, and how far the import had come."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    message = (f"the database connection was lost during the import ({reason[:200]}); nothing was written "
               f"(the import is one transaction; {planned:,} rows had been planned): run it again")
    counts = dict.fromkeys(COUNT_KEYS.values(), 0)
    run.stats = {"file": opened.file_name, "sheet": opened.table.sheet, "rows": 0, **counts, "rows_planned": planned}
    lost = DatabaseLost(message)
    lost.payload = {"run_id": run.id, "dry_run": False, "rows": 0, **{k: 0 for k in (
        "created", "updated", "unchanged", "skipped_locked", "unmatched")}, "errors": [{"row": None, "message": message}]}
    return lost


# The job (preview → apply as one run) is lib/jobs/import_subscriptions.py; these names stay for callers.

def apply_plan(engine: Engine, plan: ImportPlan, *, user: str, role: str,
               on_progress: ProgressCallback | None = None) -> dict:
    """Write a preview's creates and updates in one transaction, as one run; the summary with run_id."""
    from lib.jobs.import_subscriptions import apply_import_plan

    return apply_import_plan(engine, plan, actor=Actor(user, role), on_progress=on_progress)


def import_subscriptions(engine: Engine, source: Path | str | bytes, *, file_name: str | None = None,
                         sheet: str | None = None, apply: bool = False, user: str = "system", role: str = "viewer",
                         on_progress: ProgressCallback | None = None) -> tuple[ImportPlan, dict]:
    """Read, plan and (with `apply`) write in one pass; the plan and the summary (interface.md JSON keys)."""
    from lib.jobs.import_subscriptions import run_import

    return run_import(engine, source, file_name=file_name, sheet=sheet, apply=apply, actor=Actor(user, role),
                      on_progress=on_progress)
