"""`manage.py undo RUN_ID [--force] [--json]`."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.db import open_database
from lib.roles import cli_actor
from lib.runs import UndoRefused, undo_run

NAME = "undo"
HELP = "revert what one applied run changed (refuses where later changes touched the same fields)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", type=int, metavar="RUN_ID")
    parser.add_argument("--force", action="store_true", help="overwrite later changes to the same fields")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    engine = open_database()
    try:
        actor = cli_actor()
        result = undo_run(engine, args.run_id, user=actor.email, role=actor.role, force=args.force)
    except UndoRefused as exc:
        exc.payload = {"run_id": None, "undone_run_id": args.run_id, "conflicts": exc.conflicts}
        raise
    emit(args, result, lambda d: (f"run {d['undone_run_id']} undone as run {d['run_id']}: "
                                  f"{d['fields_restored']} field(s) restored, {d['rows_deleted']} row(s) removed, "
                                  f"{d['rows_restored']} row(s) put back"))
    return 0
