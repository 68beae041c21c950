"""Browser tests: a real `streamlit run Home.py` server and headless Debian Chromium driven by Playwright.

Usage in a test:
    def test_x(engine, streamlit_server, browser_page):
        base = streamlit_server()              # env from the test (DATABASE_URL etc.) is inherited
        page = browser_page(base)              # page.goto(base) done, app rendered
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import suppress

import pytest

from tests.conftest import CHROMIUM, ROOT, require_chromium

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_health(base: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with suppress(OSError):
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        time.sleep(0.3)
    raise TimeoutError(f"streamlit did not become healthy at {base}")


@pytest.fixture
def streamlit_server():
    """Start `streamlit run Home.py` on a free port with the test's environment (plus `extra_env`)."""
    procs: list[subprocess.Popen] = []

    def start(extra_env: dict | None = None) -> str:
        port = free_port()
        env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(ROOT)}
        log = open(os.devnull, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "Home.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base)
        return base

    yield start
    for proc in procs:
        proc.terminate()
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        if proc.poll() is None:
            proc.kill()


@pytest.fixture
def browser_page():
    """A Chromium page (Debian's /usr/bin/chromium, never a downloaded browser) that opens the app."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)

    def open_app(base: str, path: str = ""):
        page = context.new_page()
        page.goto(f"{base}/{path}")
        page.get_by_test_id("stApp").wait_for()
        page.wait_for_selector('[data-testid="stMain"]')
        wait_idle(page)
        return page

    yield open_app
    context.close()
    browser.close()
    pw.stop()


def wait_idle(page, timeout: float = 30_000) -> None:
    """Wait until the script run finished (the status widget shows no 'Running…')."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout,
    )
    page.wait_for_timeout(200)
