"""Per-rerun cost of the module navigation with many modules (target: 100 modules add < 50 ms to a rerun).

Generates N modules (module.json, page, migration) in a temporary MODULES_DIR, enables them on a temporary
SQLite database (or --database-url), then times `ui.module_pages.module_navigation_pages()` inside a real
Streamlit script run (AppTest):
- cold: first call in a process (every module.json read and validated, dependencies resolved);
- warm: later reruns (a stat per module.json, one query of module_state, the st.Page objects).

Run: python bench/bench_modules.py [--modules 100] [--reruns 50] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

SCRIPT = textwrap.dedent(
    """
    import time
    import streamlit as st
    from lib.modules import forget_discovery
    from ui.module_pages import module_navigation_pages

    forget_discovery()
    started = time.perf_counter()
    pages = module_navigation_pages("admin")
    cold = time.perf_counter() - started
    warm = []
    for _ in range(int(st.session_state["reruns"])):
        started = time.perf_counter()
        module_navigation_pages("admin")
        warm.append(time.perf_counter() - started)
    st.session_state["result"] = {"pages": len(pages), "cold": cold, "warm": warm}
    """
)


def generate(folder: Path, count: int) -> None:
    """`count` modules; every tenth depends on the one before, so resolution has edges to walk."""
    for i in range(count):
        name = f"bench_{i:03d}"
        module = folder / name
        (module / "migrations").mkdir(parents=True)
        deps = [f"bench_{i - 1:03d}>=1.0"] if i % 10 and i else []
        (module / "module.json").write_text(json.dumps({
            "name": name, "version": "1.0.0", "description": f"Benchmark module {i}", "dependencies": deps,
            "hub_version": ">=1.0", "pages": [{"file": "page.py", "title": f"Bench {i}"}],
            "config": {"READ_ONLY": True, "DRY_RUN": True}, "enabled": False,
        }))
        (module / "page.py").write_text("import streamlit as st\nst.write('bench')\n")
        (module / "migrations" / "001_init.sql").write_text(f"CREATE TABLE {name}_items (id INTEGER PRIMARY KEY);\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=100)
    parser.add_argument("--reruns", type=int, default=50)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    args = parser.parse_args()

    logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench_modules_"))
    try:
        return _run(args, work)
    finally:
        from lib.db import dispose_engines

        dispose_engines()
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: Path) -> int:
    os.environ["MODULES_DIR"] = str(work / "modules")
    os.environ["DATABASE_URL"] = args.database_url or f"sqlite:///{work / 'hub.db'}"
    os.environ["MODULES_AUTO_RELOAD"] = "true"
    generate(work / "modules", args.modules)

    from streamlit.testing.v1 import AppTest

    from lib.db import open_database
    from lib.modules import enable_module, load_registry
    from lib.roles import Actor

    ADMIN = Actor("bench", "admin")

    engine = open_database()
    started = time.perf_counter()
    registry = load_registry(engine)
    first = time.perf_counter() - started
    for info in registry.modules.values():
        enable_module(engine, info.name, ADMIN)

    at = AppTest.from_string(SCRIPT, default_timeout=120)
    at.session_state["reruns"] = args.reruns
    at.run()
    if at.exception:
        print(at.exception[0].value, file=sys.stderr)
        return 1
    result = at.session_state["result"]
    warm = sorted(result["warm"])
    p95 = warm[max(0, int(len(warm) * 0.95) - 1)]
    print(f"modules: {args.modules} ({result['pages']} pages in the navigation), database: {engine.dialect.name}")
    print(f"first discovery (state rows written once): {first * 1000:7.1f} ms")
    print(f"cold rerun (all module.json read):         {result['cold'] * 1000:7.1f} ms")
    print(f"warm rerun median / p95:                   {statistics.median(warm) * 1000:7.1f} ms / "
          f"{p95 * 1000:.1f} ms  (target < 50 ms)")
    return 0 if statistics.median(warm) < 0.050 else 1


if __name__ == "__main__":
    sys.exit(main())
