"""Demo customers for an empty Hub, matching the sandbox data set (lib/sandbox/dataset.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.errors import InputError
from lib.sandbox import dataset

COLUMNS = ("name", "cvr_number", "economic_customer_number", "vtiger_account_id", "simplycrm_account_id",
           "email", "phone", "address", "zip", "city")


def load_demo_data(engine: Engine) -> dict[str, int]:
    """Insert the demo customers into an EMPTY customers table; InputError when customers exist."""
    rows = dataset.hub_customers()
    insert = text(f"INSERT INTO customers ({', '.join(COLUMNS)}) VALUES ({', '.join(':' + c for c in COLUMNS)})")
    with engine.begin() as conn:
        existing = conn.execute(text("SELECT COUNT(*) FROM customers")).scalar_one()
        if existing:
            raise InputError(f"demo data goes into an empty Hub only; the customers table has {existing} rows")
        for row in rows:
            conn.execute(insert, {c: row.get(c) for c in COLUMNS})
    return {
        "customers": len(rows),
        "with_cvr": sum(1 for r in rows if r["cvr_number"]),
        "without_cvr": sum(1 for r in rows if not r["cvr_number"]),
        "linked_economic": sum(1 for r in rows if r["economic_customer_number"] is not None),
        "linked_vtiger": sum(1 for r in rows if r["vtiger_account_id"]),
        "linked_simplycrm": sum(1 for r in rows if r["simplycrm_account_id"]),
    }
