"""Customers page queries at 50,000 customers: one search page and the dashboard counts.

    python bench/bench_customers.py [--customers 50000] [--database-url URL]

Default database: a temporary SQLite file; pass a PostgreSQL URL (a fresh schema is created and dropped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.schemas import fresh_schema  # noqa: E402
from lib.audit import insert_rows  # noqa: E402
from lib.customers import dashboard_counts, search_customers  # noqa: E402
from lib.cvr import make_cvr  # noqa: E402
from lib.db import get_engine  # noqa: E402
from lib.migrations import migrate_core  # noqa: E402


def timed(fn, repeat: int = 7) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    cleanup = None
    if args.database_url and args.database_url.startswith("postgresql"):
        url, cleanup = fresh_schema(args.database_url)
    else:
        url = args.database_url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    engine = get_engine(url)
    migrate_core(engine)
    rows = [{"name": f"Kunde {i:05d} {'ApS' if i % 3 else 'A/S'}", "cvr_number": make_cvr(i) if i % 4 else None,
             "economic_customer_number": 10_000 + i if i % 5 else None, "city": "Aarhus" if i % 2 else "Odense"}
            for i in range(args.customers)]
    start = time.perf_counter()
    with engine.begin() as conn:
        insert_rows(conn, "customers", rows, run_id=None, user="bench")
    print(f"database: {engine.dialect.name}, customers: {args.customers:,}, seeded in {time.perf_counter() - start:.1f} s")
    cases = {
        "first page, no search": lambda: search_customers(engine),
        "page 500, no search": lambda: search_customers(engine, page=500),
        "name search 'kunde 123'": lambda: search_customers(engine, "kunde 123"),
        "CVR prefix search": lambda: search_customers(engine, make_cvr(777)[:6]),
        "filter missing CVR": lambda: search_customers(engine, filter_name="missing_cvr"),
        "dashboard counts": lambda: dashboard_counts(engine),
    }
    for label, fn in cases.items():
        print(f"  {label:28} {timed(fn) * 1000:7.1f} ms (median of 7)")
    if cleanup:
        engine.dispose()
        cleanup()


if __name__ == "__main__":
    main()
