"""Benchmark the subscription import: a generated 100,000-row export against 20,000 customers on PostgreSQL.

    python bench/bench_import.py [--rows 100000] [--customers 20000] [--repeat 1]

Prints how long python-calamine alone needs to read the file into Python rows, and against it (ratio; target:
at most 3) the two ways to preview and apply:
- one pass: `manage.py import-subscriptions FILE --apply`, which validates, plans and writes chunk by chunk in
  one transaction while PostgreSQL inserts the previous chunk;
- two steps: the Import page's preview (read, validate, plan), then its Apply button (write the stored plan).
Also the peak RSS of each (target: under 500 MB) and a re-import preview of the same file, and the page's own
path as its worker runs it: the preview (read, validate, plan a chunk at a time, store the counts and the first
rows) and Apply (read the file again, plan and commit chunk by chunk), each in its own process, with the peak
RSS of the reading child beside each (`--steps` picks steps; a million rows: `--steps calamine,one-pass,page`). Each measured step
runs in its own fresh process (the file is generated in this one), so a peak RSS is that step's own, and each
import writes into its own fresh schema (vacuumed and analysed, then a CHECKPOINT when the role may, and dropped
once measured, so neither autovacuum nor a checkpoint lands inside a measured step). Uses BENCH_DATABASE_URL
(default: the local server).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from openpyxl import Workbook  # noqa: E402
from python_calamine import CalamineWorkbook  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from lib import tables  # noqa: E402
from lib.cvr import make_cvr  # noqa: E402
from lib.db import dispose_engines, get_engine  # noqa: E402
from lib.migrations import migrate_core  # noqa: E402

DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
HEADER = ["Kundenr", "Kunde", "CVR", "Abonnement ID", "Produkt", "Varenr", "Antal", "Enhedspris", "Interval",
          "Startdato", "Slutdato", "Status", "Bemærkning"]
PRODUCTS = [(f"Produkt {n}", f"SKU-{n:03d}") for n in range(60)]
INTERVALS = ["Måned", "Måned", "Måned", "Kvartal", "Halvår", "År"]
STATUSES = ["Aktiv"] * 8 + ["Opsagt", "Pause"]
STEPS = ("calamine", "readers", "one-pass", "two-step", "page", "cli-preview")


def customer_name(n: int) -> str:
    return f"Kunde {n} ApS"


def generate_export(path: Path, rows: int, customers: int, seed: int = 7) -> None:
    """A realistic export: mostly keyed by customer number, some by CVR or name only, a few bad rows."""
    rng = random.Random(seed)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Abonnementer")
    sheet.append(["BMC Office – abonnementer (benchmark)"])
    sheet.append([])
    sheet.append(HEADER)
    start = date(2019, 1, 1)
    for i in range(rows):
        n = rng.randrange(customers)
        product, sku = PRODUCTS[i % len(PRODUCTS)]
        kind = i % 50
        number = 10_000 + n if kind not in (1, 2) else None
        cvr = make_cvr(n) if kind in (1, 3) else None
        name = customer_name(n) if kind != 4 else f"Ukendt {i} ApS"
        if kind == 4:
            number = None
        day = start + timedelta(days=rng.randrange(2500))
        sheet.append([
            number, name, cvr, str(600_000 + i), product, sku,
            rng.randrange(1, 25) if kind != 5 else -1,
            round(rng.uniform(10, 2500), 2) if i % 3 else f"{rng.randrange(10, 2500)},{rng.randrange(100):02d}",
            INTERVALS[i % len(INTERVALS)],
            day if i % 4 else day.strftime("%d-%m-%Y"),
            None, STATUSES[i % len(STATUSES)], None,
        ])
    sheet.append([])
    sheet.append([None, "I alt"])
    workbook.save(path)


def seed_customers(engine, customers: int) -> None:
    rows = [{"name": customer_name(n), "cvr_number": make_cvr(n), "economic_customer_number": 10_000 + n,
             "subscriptions_locked": n % 500 == 0} for n in range(customers)]
    with engine.begin() as conn:
        conn.execute(tables.customers.insert(), rows)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(step: str, path: str, url: str, plan_id: int | None = None) -> dict:
    """One measured step in a fresh process, so its peak RSS is the step's own (not the file generator's)."""
    from lib.db import get_engine
    from lib.subscription_import import apply_plan, import_subscriptions, plan_import
    from lib.subscription_rows import read_export

    engine = get_engine(url) if url else None
    out: dict = {"rss_at_start_mb": peak_rss_mb()}
    started = time.perf_counter()
    if step == "calamine":
        rows = CalamineWorkbook.from_path(path).get_sheet_by_name("Abonnementer").to_python()
        out["seconds"] = time.perf_counter() - started
        out["rows"] = len(rows)
    elif step in ("read-calamine", "read-streamed"):
        from dataclasses import replace

        from lib.excel_reader import ReadLimits, read_table
        from lib.subscription_rows import HEADER_SPEC

        limits = replace(ReadLimits.from_settings(), stream_from_rows=0 if step == "read-streamed" else 10**9)
        _names, table = read_table(path, HEADER_SPEC, limits=limits)
        out["rows"] = sum(1 for _ in table.rows)
        out["seconds"] = time.perf_counter() - started
    elif step == "cli-preview":  # `import-subscriptions FILE` without --apply: counts and errors only
        from lib.jobs import runner
        from lib.roles import Actor

        _plan, out["result"] = runner.preview("import-subscriptions", {"file": path, "sheet": None, "file_name": None},
                                              Actor("bench", "admin"), engine=engine)
        out["seconds"] = time.perf_counter() - started
    elif step == "one-pass":
        _plan, out["result"] = import_subscriptions(engine, path, apply=True, user="bench", role="admin")
        out["seconds"] = time.perf_counter() - started
    elif step in ("page-preview", "page-apply"):
        from lib.job_plans import plan_for_run
        from lib.job_worker import APPLY, PREVIEW, execute
        from lib.runs import get_run, record_preview, start_run
        from lib.worker_jobs import IMPORT_KIND

        if step == "page-preview":
            run = record_preview(engine, IMPORT_KIND, user="bench", parameters={
                "action": PREVIEW, "role": "admin", "path": path, "file_name": Path(path).name})
        else:
            run = start_run(engine, IMPORT_KIND, user="bench", parameters={
                "action": APPLY, "role": "admin", "plan_id": plan_id, "file_name": Path(path).name})
        status = execute(engine, run.id)
        out["seconds"] = time.perf_counter() - started
        record = get_run(engine, run.id)
        if status != "succeeded":
            raise SystemExit(f"{step} ended {status}: {record['error']}")
        out["result"] = {k: v for k, v in record["stats"].items() if k != "plan_id"}
        if step == "page-preview":
            out["plan_id"] = plan_for_run(engine, run.id)["id"]
    else:
        plan = plan_import(engine, read_export(path))
        out["preview"] = time.perf_counter() - started
        if step == "two-step":
            started = time.perf_counter()
            out["result"] = apply_plan(engine, plan, user="bench", role="admin")
            out["apply"] = time.perf_counter() - started
        else:
            out["result"] = plan.summary()
    out["result"] = {k: len(v) if k == "errors" and isinstance(v, list) else v for k, v in out.get("result", {}).items()}
    out["peak_mb"] = peak_rss_mb()
    out["reader_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the parsing child
    return out


def run_child(step: str, path: Path, url: str = "", plan_id: int | None = None) -> dict:
    # a generated export of a million rows (inline strings) is larger than the default upload limit
    env = {**os.environ, "IMPORT_MAX_FILE_MB": str(max(50, path.stat().st_size // (1 << 20) + 1)),
           "JOBS_DIR": str(path.parent / "bench-jobs")}
    extra = ["--plan-id", str(plan_id)] if plan_id is not None else []
    done = subprocess.run([sys.executable, __file__, "--child", step, "--file", str(path), "--url", url, *extra],
                          check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout.splitlines()[-1])


class Schemas:
    """Fresh schemas, each migrated and seeded with the customers; all dropped at the end."""

    def __init__(self, base_url: str, customers: int):
        self.base_url, self.customers, self.names = base_url, customers, []
        self.admin = create_engine(base_url)

    def fresh(self) -> str:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        self.names.append(schema)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in self.base_url else "?"
        url = f"{self.base_url}{sep}options=-csearch_path%3D{schema}"
        engine = get_engine(url)
        migrate_core(engine)
        seed_customers(engine, self.customers)
        self.settle(url)
        return url

    def settle(self, url: str) -> None:
        """VACUUM ANALYZE the schema, so autovacuum has no reason to start on it during a measured step."""
        engine = get_engine(url)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("customers", "subscriptions", "changes", "runs"):
                conn.execute(text(f"VACUUM ANALYZE {table}"))
        dispose_engines()

    def checkpoint(self) -> None:
        """Flush the server's dirty buffers before a measured import, so a checkpoint due to the previous
        steps' writes does not land inside it (skipped when the role may not: superuser or pg_checkpoint)."""
        try:
            with self.admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("CHECKPOINT"))
        except Exception:  # noqa: BLE001 - only a steadier measurement is lost
            pass

    def drop(self, url: str | None = None) -> None:
        """Drop one schema (by its URL) as soon as it has been measured, so that autovacuum never starts on its
        tables during a later step; without a URL, every schema made (at the end)."""
        dispose_engines()
        names = [n for n in self.names if url is None or f"%3D{n}" in url]
        with self.admin.begin() as conn:
            for schema in names:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        self.names = [n for n in self.names if n not in names]
        if url is None:
            self.admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times (each in fresh schemas)")
    parser.add_argument("--export", help="measure this generated export instead of generating one (same --rows)")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated steps to measure (default: all of {','.join(STEPS)})")
    parser.add_argument("--child", choices=("calamine", "read-calamine", "read-streamed", "one-pass", "two-step",
                                            "reimport", "page-preview", "page-apply", "cli-preview"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--plan-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.file, args.url, args.plan_id)))
        return 0
    schemas = Schemas(os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL), args.customers)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(args.export) if args.export else Path(folder) / "abonnementer-bench.xlsx"
            if not args.export:
                started = time.perf_counter()
                generate_export(path, args.rows, args.customers)
                print(f"generated {args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB in "
                      f"{time.perf_counter() - started:.1f} s (not measured)")
            for round_number in range(1, args.repeat + 1):
                if args.repeat > 1:
                    print(f"--- run {round_number} of {args.repeat}")
                measure(path, schemas, set(args.steps.split(",")))
    finally:
        schemas.drop()
    return 0


def measure(path: Path, schemas: Schemas, steps: set[str]) -> None:
    unknown = steps - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown steps: {', '.join(sorted(unknown))} (choose from {', '.join(STEPS)})")
    print(f"host load average at start: {os.getloadavg()[0]:.1f} (2 cores shared with other jobs?)")
    calamine = run_child("calamine", path) if "calamine" in steps else None
    base = calamine["seconds"] if calamine else None
    if calamine:
        print(f"python-calamine read alone:         {base:6.2f} s, peak RSS {calamine['peak_mb']:.0f} MB")

    def ratio(seconds: float) -> str:
        return f"  ratio {seconds / base:.2f}" if base else ""

    if "readers" in steps:  # the reading child alone, both ways (IMPORT_STREAM_FROM_ROWS picks one)
        for way in ("read-calamine", "read-streamed"):
            read = run_child(way, path)
            print(f"{way} in the reading child: {read['seconds']:6.2f} s{ratio(read['seconds'])}, {read['rows']:,} rows; "
                  f"child peak RSS {read['reader_peak_mb']:.0f} MB")
    one_pass = two_step = None
    if "one-pass" in steps:
        url = schemas.fresh()
        schemas.checkpoint()
        one_pass = run_child("one-pass", path, url)
        schemas.drop(url)
        print(f"one pass (import-subscriptions --apply): {one_pass['seconds']:6.2f} s{ratio(one_pass['seconds'])} "
              f"(target <= 3); peak RSS {one_pass['peak_mb']:.0f} MB (interpreter and libraries: "
              f"{one_pass['rss_at_start_mb']:.0f} MB at start), reading child {one_pass['reader_peak_mb']:.0f} MB")
    if "two-step" in steps:
        url = schemas.fresh()
        schemas.checkpoint()
        two_step = run_child("two-step", path, url)
        schemas.settle(url)  # as the re-import of next month's export would find it
        schemas.checkpoint()
        again = run_child("reimport", path, url)
        schemas.drop(url)
        preview_s, apply_s = two_step["preview"], two_step["apply"]
        print(f"two steps (plan_import + apply_plan): preview {preview_s:.2f} s + apply {apply_s:.2f} s = "
              f"{preview_s + apply_s:.2f} s{ratio(preview_s + apply_s)}; peak RSS {two_step['peak_mb']:.0f} MB, "
              f"reading child {two_step['reader_peak_mb']:.0f} MB")
        print(f"re-import preview:                  {again['preview']:6.2f} s  (created {again['result']['created']}, "
              f"unchanged {again['result']['unchanged']:,}); peak RSS {again['peak_mb']:.0f} MB")
    if "page" in steps:
        url = schemas.fresh()
        schemas.checkpoint()
        preview = run_child("page-preview", path, url)
        schemas.checkpoint()
        apply = run_child("page-apply", path, url, preview["plan_id"])
        schemas.drop(url)
        total = preview["seconds"] + apply["seconds"]
        print(f"the page (worker): preview {preview['seconds']:.2f} s + Apply {apply['seconds']:.2f} s = {total:.2f} s"
              f"{ratio(total)}")
        print(f"  peak RSS: preview {preview['peak_mb']:.0f} MB (reading child {preview['reader_peak_mb']:.0f} MB), "
              f"Apply {apply['peak_mb']:.0f} MB (reading child {apply['reader_peak_mb']:.0f} MB); target < 500")
        r = apply["result"]
        print(f"  outcome: rows {r['rows']:,}, created {r['created']:,}, updated {r['updated']:,}, "
              f"skipped_locked {r['skipped_locked']:,}, unmatched {r['unmatched']:,}, rejected {r['rejected']:,}")
    if "cli-preview" in steps:
        url = schemas.fresh()
        preview = run_child("cli-preview", path, url)
        schemas.drop(url)
        print(f"the command line's preview (import-subscriptions FILE): {preview['seconds']:.2f} s"
              f"{ratio(preview['seconds'])}; peak RSS {preview['peak_mb']:.0f} MB, reading child "
              f"{preview['reader_peak_mb']:.0f} MB; {preview['result']['rows']:,} rows, "
              f"{preview['result']['errors']:,} errors listed")
    if one_pass and two_step:
        result = one_pass["result"]
        if result != two_step["result"] | {"run_id": result["run_id"]}:
            raise SystemExit(f"the two ways disagree: {result} against {two_step['result']}")
        print(f"outcome: rows {result['rows']:,}, created {result['created']:,}, updated {result['updated']:,}, "
              f"skipped_locked {result['skipped_locked']:,}, unmatched {result['unmatched']:,}, "
              f"errors {result['errors']:,}")
    print(f"host load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
