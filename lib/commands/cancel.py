"""`manage.py cancel RUN_ID [--json]`: ask a running job to stop at its next chunk (the page's Cancel button)."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.db import open_database
from lib.roles import cli_actor
from lib.runs import request_cancel

NAME = "cancel"
HELP = "ask a running job to stop at its next chunk; what it wrote before is kept (undo reverts it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", type=int, metavar="RUN_ID")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    actor = cli_actor()
    found = request_cancel(open_database(), args.run_id, user=actor.email, role=actor.role)
    result = {"run_id": found["run_id"], "kind": found["kind"], "status": found["status"],
              "cancel_requested_by": found["cancel_requested_by"]}
    emit(args, result, lambda d: (f"run {d['run_id']} ({d['kind']}) asked to cancel by {d['cancel_requested_by']}; "
                                  f"it stops at its next chunk" if d["status"] == "running" else
                                  f"run {d['run_id']} already ended ({d['status']})"))
    return 0
