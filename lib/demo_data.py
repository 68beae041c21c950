"""Demo customers for an empty Hub, matching the sandbox data set (lib/sandbox/dataset.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.audit import insert_rows
from lib.db import write_transaction
from lib.errors import InputError
from lib.roles import require_role
from lib.runs import job_run
from lib.sandbox import dataset

COLUMNS = ("name", "cvr_number", "economic_customer_number", "vtiger_account_id", "simplycrm_account_id",
           "email", "phone", "address", "zip", "city")


def load_demo_data(engine: Engine, *, user: str = "demo-data", role: str = "admin") -> dict[str, int]:
    """Insert the demo customers into an EMPTY customers table as one run (undoable); InputError otherwise."""
    require_role(role, "operator", "load demo data")
    rows = dataset.hub_customers()
    with engine.connect() as conn:
        existing = conn.execute(text("SELECT COUNT(*) FROM customers")).scalar_one()
    if existing:
        raise InputError(f"demo data goes into an empty Hub only; the customers table has {existing} rows")
    with job_run(engine, "demo-data", user=user, dry_run=False) as run:
        with write_transaction(engine) as conn:
            insert_rows(conn, "customers", [{c: row.get(c) for c in COLUMNS} for row in rows], run_id=run.id,
                        user=user)
        run.finish({"customers": len(rows)})
    return {
        "customers": len(rows),
        "with_cvr": sum(1 for r in rows if r["cvr_number"]),
        "without_cvr": sum(1 for r in rows if not r["cvr_number"]),
        "linked_economic": sum(1 for r in rows if r["economic_customer_number"] is not None),
        "linked_vtiger": sum(1 for r in rows if r["vtiger_account_id"]),
        "linked_simplycrm": sum(1 for r in rows if r["simplycrm_account_id"]),
    }
