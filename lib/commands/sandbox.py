"""`manage.py sandbox [--port-base N]`: run all simulators with demo data until Ctrl-C."""

from __future__ import annotations

import argparse
import threading

from lib.errors import InputError
from lib.sandbox import DEFAULT_PORT_BASE, start_sandbox

NAME = "sandbox"
HELP = "run local simulators of cvrapi.dk, e-conomic, vTiger and Simply-CRM (with demo data) until Ctrl-C"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port-base", type=int, default=DEFAULT_PORT_BASE,
                        help=f"cvrapi on N, e-conomic N+1, vTiger N+2, Simply-CRM N+3 (default {DEFAULT_PORT_BASE})")


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    if not 1 <= args.port_base <= 65532:
        raise InputError(f"--port-base must be between 1 and 65532, got {args.port_base}")
    try:
        sandbox = start_sandbox(args.port_base, demo=True)
    except OSError as exc:
        raise InputError(f"cannot listen on ports {args.port_base}-{args.port_base + 3}: {exc.strerror}") from None
    try:
        print("# BMC Hub sandbox is running. Point the Hub at it with:")
        for name, value in sandbox.env().items():
            print(f"export {name}='{value}'")
        print("# then: python manage.py demo-data  (on an empty database). Ctrl-C stops the sandbox.", flush=True)
        (stop or threading.Event()).wait()
    except KeyboardInterrupt:
        print("# sandbox stopped")
    finally:
        sandbox.stop()
    return 0
