"""Four people browse while a 30,000-row import previews and applies: do their pages stay fast?

    python bench/bench_load.py [--people 4] [--rows 30000] [--customers 2000] [--seconds 20] [--database-url URL]

One `streamlit run Home.py` server on a fresh database (default: a new PostgreSQL database on the local server;
a sqlite:/// URL works too). Each person is a Playwright browser context in Debian's Chromium, opening the
overview pages in turn by URL (a full page load: a new session, the script run, the page rendered and idle).
After one warm-up round of every page (not measured), they browse for `--seconds` alone (the baseline); then again while an operator, in a fifth context,
uploads the generated export, waits for the worker's preview, applies it and waits for the result. A page
load that does not finish within 30 s counts as unfinished. Reported: median and p95 of both phases and
their ratio (target: p95 with the import within 2x of p95 without), unfinished loads, and how long the
import's preview and apply took. Figures from one run on one machine; see docs/JOBS.md ("Load").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_import import generate_export, seed_customers  # noqa: E402
from tests.browser import CHROMIUM_ARGS, free_port, wait_for_health  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PAGES = [("", "BMC Hub"), ("customers", "Customers"), ("subscriptions", "Subscriptions"), ("runs", "Runs")]
LOAD_TIMEOUT_MS = 30_000
IDLE = ("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')")


def fresh_database(url: str | None) -> tuple[str, callable]:
    from sqlalchemy import create_engine, text

    if url and url.startswith("sqlite"):
        return url, lambda: None
    admin_url = url or "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    name = f"bench_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = admin_url.rsplit("/", 1)[0]

    def drop() -> None:
        from lib.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return f"{base}/{name}", drop


async def load(page, base: str, path: str, title: str) -> float | None:
    """Seconds from navigation until the page's title shows and its script run is idle; None: unfinished."""
    started = time.perf_counter()
    try:
        await page.goto(f"{base}/{path}", timeout=LOAD_TIMEOUT_MS)
        await page.get_by_role("heading", name=title).first.wait_for(timeout=LOAD_TIMEOUT_MS)
        await page.wait_for_function(IDLE, timeout=LOAD_TIMEOUT_MS)
    except Exception:  # noqa: BLE001 - a timeout (or a broken connection) is an unfinished load
        return None
    return time.perf_counter() - started


async def browse(context, base: str, until: asyncio.Event, out: list, person: int) -> None:
    page = await context.new_page()
    n = person
    while not until.is_set():
        path, title = PAGES[n % len(PAGES)]
        out.append(await load(page, base, path, title))
        n += 1


async def warm_up(context, base: str) -> None:
    page = await context.new_page()
    for path, title in PAGES:
        await load(page, base, path, title)
    await page.close()


async def operate(context, base: str, export: Path, timings: dict) -> None:
    page = await context.new_page()
    await page.goto(f"{base}/import_subscriptions")
    await page.get_by_test_id("stApp").wait_for()
    started = time.perf_counter()
    await page.locator('input[type="file"]').set_input_files(str(export))
    apply = page.locator("button", has_text="Apply (")
    await apply.wait_for(timeout=300_000)
    timings["preview_s"] = time.perf_counter() - started
    started = time.perf_counter()
    await apply.click()
    await page.get_by_text("Left unchanged").first.wait_for(timeout=600_000)
    timings["apply_s"] = time.perf_counter() - started


def summary(times: list) -> dict:
    done = sorted(t for t in times if t is not None)
    p95 = done[max(0, int(round(0.95 * len(done))) - 1)] if done else float("nan")
    return {"loads": len(times), "unfinished": len(times) - len(done),
            "median_ms": statistics.median(done) * 1000 if done else float("nan"), "p95_ms": p95 * 1000}


async def measure(base: str, export: Path, people: int, seconds: float) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        contexts = [await browser.new_context() for _ in range(people + 1)]
        warm = [asyncio.create_task(warm_up(c, base)) for c in contexts[:people]]  # first loads import modules
        await asyncio.gather(*warm)
        alone: list = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(browse(c, base, stop, alone, n)) for n, c in enumerate(contexts[:people])]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)

        busy: list = []
        stop = asyncio.Event()
        timings: dict = {}
        tasks = [asyncio.create_task(browse(c, base, stop, busy, n)) for n, c in enumerate(contexts[:people])]
        await operate(contexts[people], base, export, timings)
        stop.set()
        await asyncio.gather(*tasks)
        await browser.close()
    return {"alone": summary(alone), "import": summary(busy), "load": os.getloadavg()[0], **timings}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=4)
    parser.add_argument("--rows", type=int, default=30_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the baseline phase")
    parser.add_argument("--database-url", help="a PostgreSQL server URL (a fresh database is made) or sqlite:///FILE")
    args = parser.parse_args()

    url, drop = fresh_database(args.database_url)
    work = Path(tempfile.mkdtemp(prefix="bench_load_"))
    server = None
    try:
        os.environ["DATABASE_URL"] = url
        from lib.db import open_database

        engine = open_database(url)
        seed_customers(engine, args.customers)
        export = work / "abonnementer-load.xlsx"
        generate_export(export, args.rows, args.customers)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "JOBS_DIR": str(work / "jobs"), "PYTHONPATH": str(ROOT)}
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "Home.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base)
        result = asyncio.run(measure(base, export, args.people, args.seconds))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)
        drop()
    alone, busy = result["alone"], result["import"]
    ratio = busy["p95_ms"] / alone["p95_ms"]
    print(f"{args.people} people browsing (Dashboard, Customers, Subscriptions, Runs), {args.rows:,}-row import "
          f"against {args.customers:,} customers, {engine.dialect.name}")
    for name, s in (("without the import", alone), ("during the import", busy)):
        print(f"  {name:19}: {s['loads']:4} page loads, median {s['median_ms']:6.0f} ms, p95 {s['p95_ms']:6.0f} ms, "
              f"unfinished {s['unfinished']}")
    print(f"  machine load average (1 min) at the end: {result['load']:.1f} on {os.cpu_count()} cores")
    print(f"  p95 ratio {ratio:.2f} (target < 2); preview {result['preview_s']:.1f} s, apply {result['apply_s']:.1f} s "
          "(in the worker process)")
    return 0 if ratio < 2 and busy["unfinished"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
