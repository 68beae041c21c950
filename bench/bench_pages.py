"""Every page's server-side rerun time at scale: 50,000 customers, 200,000 subscriptions, 2,000,000 change rows.

    python bench/bench_pages.py [--database-url URL] [--scale 1.0] [--repeat 5] [--rebuild]

The script cache is shared between runs as in the server (AppTest alone recompiles every script on every run).
Default database: SQLite at bench/out/pages.db; a PostgreSQL URL gets a schema `bench_pages`. The data set is
built once and reused (`--rebuild` makes it again). Each page runs in AppTest (the Streamlit script, as the
server runs it, without a browser): the first run, then `--repeat` reruns, reported as the median rerun.
The budget is 150 ms a rerun (issue #19). `--scale 0.1` builds a tenth of the data, for a quick look.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CUSTOMERS, SUBSCRIPTIONS, CHANGES, RUNS = 50_000, 200_000, 2_000_000, 2_000
BUDGET_MS = 150
PRODUCTS = ["Microsoft 365 Business Standard", "Backup 100 GB", "Firewall managed", "Domæne .dk", "Hosted telefoni",
            "Exchange Online", "Teams Phone", "Antivirus", "Support 10 t", "Webhotel"]


def database_url(url: str | None) -> str:
    if not url:
        out = ROOT / "bench" / "out"
        out.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{out / 'pages.db'}"
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine, text
        with create_engine(url).begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS bench_pages"))
        return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3Dbench_pages"
    return url


def build(url: str, scale: float, rebuild: bool) -> dict:
    """The data set, made with plain INSERTs (the shapes the Hub writes; not through the audit layer, for speed)."""
    from sqlalchemy import text

    from lib.cvr import make_cvr
    from lib.db import get_engine, write_transaction
    from lib.migrations import migrate_core

    engine = get_engine(url)
    if rebuild and engine.dialect.name == "sqlite":
        engine.dispose()
        Path(engine.url.database).unlink(missing_ok=True)
        engine = get_engine(url)
    migrate_core(engine)
    n_customers, n_subs, n_changes, n_runs = (int(n * scale) for n in (CUSTOMERS, SUBSCRIPTIONS, CHANGES, RUNS))
    with engine.connect() as conn:
        have = conn.execute(text("SELECT count(*) FROM customers")).scalar_one()
        changes = conn.execute(text("SELECT count(*) FROM changes")).scalar_one()
    if have == n_customers and changes >= n_changes and not rebuild:
        return {"customers": have, "changes": changes, "built": False}
    rng = random.Random(7)
    started = time.perf_counter()
    with write_transaction(engine) as conn:
        for table in ("run_locks", "changes", "subscriptions", "customers", "runs"):
            conn.execute(text(f"DELETE FROM {table}"))
        conn.execute(text("INSERT INTO customers (id, name, cvr_number, economic_customer_number, email, city, zip) "
                          "VALUES (:id, :name, :cvr, :eco, :email, :city, :zip)"),
                     [{"id": i, "name": f"Kunde {i:05d} {rng.choice(['ApS', 'A/S', 'I/S'])}",
                       "cvr": make_cvr(10_000_000 + i * 7) if i % 3 else None,
                       "eco": 100_000 + i if i % 4 else None, "email": f"info@kunde{i}.dk",
                       "city": rng.choice(["Aarhus C", "Odense", "København K", "Aalborg"]), "zip": "8000"}
                      for i in range(1, n_customers + 1)])
        conn.execute(text("INSERT INTO runs (id, kind, status, triggered_by, started_at, finished_at, stats) "
                          "VALUES (:id, :kind, 'succeeded', 'bench', :at, :at, :stats)"),
                     [{"id": r, "kind": rng.choice(["import-subscriptions", "cvr-lookup", "economic-relink", "crm-sync",
                                                    "customer-edit"]),
                       "at": f"2026-{1 + r % 11:02d}-{1 + r % 27:02d} 10:00:00",
                       "stats": json.dumps({"created": r, "updated": 0, "unchanged": 1, "unmatched": 0,
                                            "candidates": 10, "found": 7})} for r in range(1, n_runs + 1)])
        conn.execute(text("INSERT INTO subscriptions (id, customer_id, external_id, product, sku, quantity, unit_price, "
                          "billing_interval, start_date, status, source) VALUES (:id, :c, :ext, :p, :sku, :q, :price, "
                          ":interval, :start, :status, 'bmc-office')"),
                     [{"id": s, "c": 1 + s % n_customers, "ext": f"A-{s}", "p": PRODUCTS[s % len(PRODUCTS)],
                       "sku": f"SKU-{s % 37}", "q": 1 + s % 12, "price": round(50 + (s % 400) * 2.5, 2),
                       "interval": ["monthly", "quarterly", "yearly"][s % 3], "start": f"20{20 + s % 6}-0{1 + s % 9}-01",
                       "status": ["active", "active", "active", "cancelled", "paused"][s % 5]}
                      for s in range(1, n_subs + 1)])
        batch = []
        for i in range(1, n_changes + 1):
            is_sub = i % 4 != 0
            batch.append({"id": i, "run": 1 + (i * n_runs) // (n_changes + 1), "t": "subscriptions" if is_sub else "customers",
                          "row": 1 + i % (n_subs if is_sub else n_customers), "f": "quantity" if is_sub else "phone",
                          "old": json.dumps(i % 10), "new": json.dumps(i % 10 + 1)})
            if len(batch) == 50_000:
                conn.execute(text("INSERT INTO changes (id, run_id, table_name, row_id, action, field, old_value, "
                                  "new_value, changed_by) VALUES (:id, :run, :t, :row, 'update', :f, :old, :new, 'bench')"),
                             batch)
                batch = []
        if batch:
            conn.execute(text("INSERT INTO changes (id, run_id, table_name, row_id, action, field, old_value, new_value, "
                              "changed_by) VALUES (:id, :run, :t, :row, 'update', :f, :old, :new, 'bench')"), batch)
        if engine.dialect.name == "postgresql":
            for table in ("customers", "subscriptions", "runs", "changes"):
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    return {"customers": n_customers, "changes": n_changes, "built": True,
            "build_seconds": round(time.perf_counter() - started, 1)}


def pages() -> list[str]:
    """Home.py is the router drawing the Dashboard (app_pages/home.py needs the router for its links)."""
    return ["Home.py", *sorted(f"app_pages/{p.name}" for p in (ROOT / "app_pages").glob("*.py") if p.name != "home.py")]


def measure(url: str, repeat: int) -> list[dict]:
    """Runs in a fresh process per database (the settings and engine caches are per process)."""
    os.environ["DATABASE_URL"] = url
    import streamlit.testing.v1.app_test as app_test_module
    import streamlit.testing.v1.local_script_runner as runner_module
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache
    from streamlit.testing.v1 import AppTest

    # The server compiles each script once (one ScriptCache per runtime); AppTest makes a new cache on every
    # run, so without this every rerun would also pay ≈40 ms of compiling Home.py and the page.
    shared = ScriptCache()
    app_test_module.ScriptCache = runner_module.ScriptCache = lambda: shared

    results = []
    for page in pages():
        at = AppTest.from_file(str(ROOT / page), default_timeout=120)
        start = time.perf_counter()
        at.run()
        first = time.perf_counter() - start
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            at.run()
            samples.append(time.perf_counter() - start)
        rerun = statistics.median(samples)
        results.append({"page": page, "first_ms": round(first * 1000), "rerun_ms": round(rerun * 1000),
                        "exception": bool(at.exception), "within_budget": rerun * 1000 <= BUDGET_MS})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--measure-only", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_only:
        print(json.dumps(measure(args.measure_only, args.repeat)))
        return
    url = database_url(args.database_url)
    data = build(url, args.scale, args.rebuild)
    print(f"# {url.split('?')[0]}: {data}")
    out = subprocess.run([sys.executable, __file__, "--measure-only", url, "--repeat", str(args.repeat)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    results = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'page':40} {'first run':>10} {'rerun (median)':>15}  budget {BUDGET_MS} ms")
    for r in results:
        flag = "ok" if r["within_budget"] else "OVER"
        print(f"{r['page']:40} {r['first_ms']:>8} ms {r['rerun_ms']:>12} ms  {flag}{'  EXCEPTION' if r['exception'] else ''}")


if __name__ == "__main__":
    main()
