"""Benchmark of economic-relink: N Hub customers against N e-conomic customers through the simulator.

Run: python bench/bench_economic.py [--size 20000] [--latency 0.02] [--seed 7]
The database is a temporary SQLite file, or PostgreSQL when BENCH_DATABASE_URL is set (a scratch schema
is created there and dropped afterwards). Prints total time, time waiting on HTTP, matching time, the apply
time and the quality of the applied links against the generator's truth.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.matching_dataset import make_dataset  # noqa: E402
from bench.schemas import fresh_schema  # noqa: E402
from lib.audit import insert_rows  # noqa: E402
from lib.db import get_engine  # noqa: E402
from lib.economic_client import EconomicClient  # noqa: E402
from lib.economic_relink import apply_economic_relink, plan_economic_relink  # noqa: E402
from lib.migrations import migrate_core  # noqa: E402
from lib.roles import Actor  # noqa: E402
from lib.sandbox import EconomicSimulator, make_customer  # noqa: E402

STALE_BASE = 900_000


def database(tmp: str) -> tuple[str, Callable[[], None]]:
    """A fresh database URL and its clean-up."""
    base = os.environ.get("BENCH_DATABASE_URL")
    if not base:
        return f"sqlite:///{tmp}/bench.db", lambda: None
    return fresh_schema(base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the simulator adds to each request")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    t = time.perf_counter()
    data = make_dataset(args.size, args.size, seed=args.seed)
    number_of = {rec.key: 10_000 + i for i, rec in enumerate(data.outside)}
    print(f"data set: {len(data.hub):,} Hub customers, {len(data.outside):,} e-conomic customers, "
          f"{len(data.truth):,} true pairs ({time.perf_counter() - t:.1f} s to generate)")

    with tempfile.TemporaryDirectory() as tmp, EconomicSimulator() as sim:
        url, drop = database(tmp)
        try:
            engine = get_engine(url)
            migrate_core(engine)
            rows = []
            for i, rec in enumerate(data.hub):
                twin = data.truth.get(rec.key)
                link = number_of[twin] if twin is not None and i % 10 == 0 else (STALE_BASE + i if i % 20 == 5 else None)
                rows.append({"name": rec.name, "cvr_number": rec.cvr, "economic_customer_number": link,
                             "zip": rec.zip, "city": rec.city})
            with engine.begin() as conn:
                ids = insert_rows(conn, "customers", rows, run_id=None, user="bench")
            id_of = {rec.key: cid for rec, cid in zip(data.hub, ids, strict=True)}
            truth = {id_of[h]: number_of[o] for h, o in data.truth.items()}
            sim.customers = [make_customer(number_of[r.key], r.name, cvr=r.cvr, zip=r.zip, city=r.city)
                             for r in data.outside]
            sim.latency = args.latency

            with EconomicClient(sim.url, sim.app_secret_token, sim.agreement_grant_token) as client:
                plan = plan_economic_relink(engine, client)
            started = time.perf_counter()
            payload = apply_economic_relink(engine, plan, actor=Actor("bench", "admin", "cli"))
            apply_s = time.perf_counter() - started

            with engine.connect() as conn:
                after = dict(conn.execute(text("SELECT id, economic_customer_number FROM customers")).all())
            written = {row["id"]: row["economic_customer_number"] for row in rows_with_ids(rows, ids)}
            applied = {cid: n for cid, n in after.items() if n != written[cid]}
            correct = sum(1 for cid, n in applied.items() if truth.get(cid) == n)
            recall = sum(1 for cid, n in truth.items() if after[cid] == n) / len(truth)

            timings = plan.timings
            print(f"database: {engine.dialect.name}; simulator latency {args.latency * 1000:.0f} ms per request")
            print(f"requests: {sim.request_count} (pages of 1000; client counted {plan.requests})")
            print(f"plan total: {timings['total_s']:.2f} s = HTTP {timings['http_s']:.2f} s "
                  f"+ Hub read {timings['db_s']:.2f} s + matching {timings['matching_s']:.2f} s")
            print(f"apply: {apply_s:.2f} s for {payload['linked']:,} links (run {payload['run_id']})")
            print(f"total (plan + apply): {timings['total_s'] + apply_s:.2f} s")
            print("counts: " + ", ".join(f"{k} {payload[k]:,}" for k in (
                "linked", "changed", "unchanged", "ambiguous", "unmatched")))
            print(f"applied links: precision {correct / max(len(applied), 1):.4f}, recall {recall:.4f}")
            engine.dispose()
        finally:
            drop()


def rows_with_ids(rows: list[dict], ids: list[int]) -> list[dict]:
    return [{**row, "id": cid} for row, cid in zip(rows, ids, strict=True)]


if __name__ == "__main__":
    main()
