"""Undo of a large import against the import itself: undo must take no longer than the apply it reverts.

    python bench/bench_undo.py [--rows 100000] [--customers 20000] [--database-url URL] [--repeat N] [--reimport]

Generates a BMC Office export (bench_import's generator), applies it with `import-subscriptions --apply`'s
library path, then undoes the run; prints both times and their ratio (from the same run) and the host's load
average. Default database: a temporary SQLite file; a PostgreSQL URL gets a fresh schema, dropped afterwards.
`--repeat` measures apply and undo again into a fresh database each time, with the same file. `--reimport`
applies the file first (not timed), then measures a second export of the same subscriptions with other
values (mostly updates) and its undo.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_import import generate_export, seed_customers  # noqa: E402

from bench.schemas import fresh_schema  # noqa: E402
from lib.db import get_engine  # noqa: E402
from lib.migrations import migrate_core  # noqa: E402
from lib.runs import undo_run  # noqa: E402
from lib.subscription_import import import_subscriptions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--database-url")
    parser.add_argument("--repeat", type=int, default=1, help="apply and undo this many times (default 1)")
    parser.add_argument("--reimport", action="store_true", help="measure a re-import that updates, and its undo")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-undo-"))
    export = work / "export.xlsx"
    generate_export(export, args.rows, args.customers)
    again = None
    if args.reimport:
        again = work / "export-again.xlsx"
        generate_export(again, args.rows, args.customers, seed=8)
    for attempt in range(1, args.repeat + 1):
        measure(args, work / f"undo-{attempt}.db", export, again)


def measure(args: argparse.Namespace, sqlite_path: Path, export: Path, again: Path | None) -> None:
    """Apply the export into a fresh database (then `again` over it, when given), undo the run; print both
    times."""
    drop = None
    if args.database_url and args.database_url.startswith("postgresql"):
        url, drop = fresh_schema(args.database_url, "bench_undo")
    else:
        url = f"sqlite:///{sqlite_path}"
    try:
        engine = get_engine(url)
        migrate_core(engine)
        seed_customers(engine, args.customers)
        if again is not None:
            import_subscriptions(engine, export, apply=True, user="bench", role="admin")
        start = time.perf_counter()
        _plan, summary = import_subscriptions(engine, again or export, apply=True, user="bench", role="admin")
        applied = time.perf_counter() - start
        start = time.perf_counter()
        result = undo_run(engine, summary["run_id"], user="bench", role="admin")
        undone = time.perf_counter() - start
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{engine.dialect.name}: {args.rows:,} rows; apply {applied:.1f} s ({summary['created']:,} created, "
              f"{summary['updated']:,} updated), undo {undone:.1f} s ({result['rows_deleted']:,} removed, "
              f"{result['fields_restored']:,} fields restored); undo/apply = {undone / applied:.2f}; "
              f"load average {load}", flush=True)
    finally:
        if drop:
            drop()


if __name__ == "__main__":
    main()
