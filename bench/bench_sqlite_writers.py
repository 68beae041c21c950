"""Does a customer edit get through while a long import writes to SQLite? (issue #17: "SQLite writers starve")

    python bench/bench_sqlite_writers.py [--rows 100000] [--customers 20000]

Imports a generated export into a fresh SQLite file in a second process, both ways the Hub writes it:
- chunked: the Import page's Apply (the worker's `import_in_chunks`: one transaction per 2,500-row chunk);
- one pass: `import-subscriptions FILE --apply` (one transaction for the whole file);
and meanwhile edits a customer every 0.2 s from this process (`update_customer`, as the Customers page does).
Prints each edit's latency: the longest is how long a writer may wait behind the import.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_import import generate_export, seed_customers  # noqa: E402
from lib.customers import update_customer  # noqa: E402
from lib.db import dispose_engines, get_engine  # noqa: E402
from lib.migrations import migrate_core  # noqa: E402


def run_import(url: str, path: str, way: str, done) -> None:
    from lib.job_worker import Progress
    from lib.runs import job_run
    from lib.subscription_import import KIND, import_subscriptions
    from lib.subscription_rows import open_export
    from lib.worker_jobs import import_in_chunks

    engine = get_engine(url)
    started = time.perf_counter()
    if way == "one pass":
        import_subscriptions(engine, path, apply=True, user="bench", role="admin")
    else:
        with job_run(engine, KIND, user="bench", dry_run=False) as run:
            run.finish(import_in_chunks(engine, run, open_export(path), expected=None, progress=Progress(run)))
    done.value = time.perf_counter() - started


def measure(url: str, path: Path, way: str) -> None:
    engine = get_engine(url)
    spawn = multiprocessing.get_context("spawn")
    done = spawn.Value("d", 0.0)
    child = spawn.Process(target=run_import, args=(url, str(path), way, done))
    child.start()
    latencies: list[float] = []
    failures: list[str] = []
    n = 0
    while child.is_alive():
        n += 1
        started = time.perf_counter()
        try:
            update_customer(engine, 1, {"phone": f"{n:08d}"}, user="editor")
        except Exception as exc:  # noqa: BLE001 - a refusal is what we measure
            failures.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        latencies.append(time.perf_counter() - started)
        time.sleep(0.2)
    child.join()
    latencies.sort()
    print(f"{way:9}: import {done.value:5.1f} s; {len(latencies)} edits meanwhile, median "
          f"{latencies[len(latencies) // 2]:.2f} s, longest {latencies[-1]:.2f} s; failed {len(failures)}"
          + (f" ({failures[0]})" if failures else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.xlsx"
        generate_export(path, args.rows, args.customers)
        for way in ("chunked", "one pass"):
            url = f"sqlite:///{folder}/{way.replace(' ', '-')}.db"
            engine = get_engine(url)
            migrate_core(engine)
            seed_customers(engine, args.customers)
            dispose_engines()
            measure(url, path, way)
    return 0


if __name__ == "__main__":
    sys.exit(main())
