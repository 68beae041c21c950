"""`manage.py sandbox [--port-base N] [--env-file FILE] [--vtiger-per-minute N]`: run all simulators with demo
data until Ctrl-C (optionally with vTiger Cloud's per-minute limit);
`manage.py sandbox --wait FILE`: wait until a sandbox started with `--env-file FILE` answers."""

from __future__ import annotations

import argparse
import os
import re
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from lib.errors import InputError
from lib.sandbox import DEFAULT_PORT_BASE, start_sandbox

NAME = "sandbox"
HELP = "run local simulators of cvrapi.dk, e-conomic, vTiger and Simply-CRM (with demo data) until Ctrl-C"
URL_SETTINGS = ("CVR_API_URL", "ECONOMIC_API_URL", "VTIGER_URL", "SIMPLYCRM_URL")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                        help=f"cvrapi on N, e-conomic N+1, vTiger N+2, Simply-CRM N+3 (default {DEFAULT_PORT_BASE})")
    parser.add_argument("--env-file", metavar="FILE",
                        help="also write the export lines to FILE, once every simulator answers")
    parser.add_argument("--wait", metavar="FILE",
                        help="start nothing: wait until a sandbox started with --env-file FILE answers (exit 0), "
                             "or give up after --timeout seconds (exit 2)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds --wait waits (default 30)")
    parser.add_argument("--vtiger-per-minute", type=int, metavar="N",
                        help="answer like vTiger Cloud: N requests a minute, X-FloodControl-* headers, then HTTP 429 "
                             "(30, 60 or 90 are the editions' limits)")


def answers(url: str) -> bool:
    """True when an HTTP server answers at `url` (any status: the simulators answer 4xx to a bare GET)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def read_env_file(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^export (\w+)='([^']*)'$", path.read_text(encoding="utf-8"), re.MULTILINE))


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Atomically: a reader sees no file or the whole file, never a half-written one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(f"export {name}='{value}'\n" for name, value in env.items()), encoding="utf-8")
    tmp.replace(path)


def wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file():
            env = read_env_file(path)
            urls = [env[name] for name in URL_SETTINGS if name in env]
            if len(urls) == len(URL_SETTINGS) and all(answers(url) for url in urls):
                return
        time.sleep(0.2)
    raise InputError(f"the sandbox did not answer within {timeout:g} s: {path} "
                     f"{'is incomplete or its simulators do not answer' if path.is_file() else 'was not written'}")


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    if getattr(args, "wait", None):
        wait_for(Path(args.wait), args.timeout)
        print(f"# the sandbox answers; now: source {args.wait}")
        return 0
    if not 1 <= args.port_base <= 65532:
        raise InputError(f"--port-base must be between 1 and 65532, got {args.port_base}")
    try:
        sandbox = start_sandbox(args.port_base, demo=True)
    except OSError as exc:
        raise InputError(f"cannot listen on ports {args.port_base}-{args.port_base + 3}: {exc.strerror}") from None
    env_file = Path(args.env_file) if getattr(args, "env_file", None) else None
    per_minute = getattr(args, "vtiger_per_minute", None)
    if per_minute is not None and per_minute < 1:
        sandbox.stop()
        raise InputError(f"--vtiger-per-minute must be at least 1, got {per_minute}")
    try:
        env = sandbox.env()
        silent = [name for name in URL_SETTINGS if not answers(env[name])]
        if silent:
            raise InputError(f"the sandbox started but {', '.join(silent)} does not answer")
        if per_minute is not None:  # after the start-up check, so that check does not count
            sandbox.vtiger.flood_limit = per_minute
        if env_file:
            write_env_file(env_file, env)
        print("# BMC Hub sandbox is running. Point the Hub at it with:")
        for name, value in env.items():
            print(f"export {name}='{value}'")
        if per_minute is not None:
            print(f"# vTiger answers like vTiger Cloud: {per_minute} requests a minute, then HTTP 429")
        print("# then: python manage.py demo-data  (on an empty database). Ctrl-C stops the sandbox.", flush=True)
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        print("# sandbox stopped")
    finally:
        sandbox.stop()
        if env_file:
            env_file.unlink(missing_ok=True)  # its addresses are dead now
    return 0
