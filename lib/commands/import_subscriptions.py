"""`manage.py import-subscriptions FILE [--sheet NAME] [--apply] [--json]`: the BMC Office Excel import."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.db import open_database
from lib.errors import InputError
from lib.roles import cli_actor
from lib.subscription_import import import_subscriptions

NAME = "import-subscriptions"
HELP = "import subscriptions from a BMC Office Excel export (preview unless --apply)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .xlsx or .xlsm export")
    parser.add_argument("--sheet", metavar="NAME", help='sheet to read (default "Abonnementer", else the first '
                                                        "sheet with the required columns)")
    parser.add_argument("--apply", action="store_true", help="write the changes (default: preview only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _empty_result(dry_run: bool, message: str) -> dict:
    return {"run_id": None, "dry_run": dry_run, "rows": 0, "created": 0, "updated": 0, "unchanged": 0,
            "skipped_locked": 0, "unmatched": 0, "errors": [{"row": None, "message": message}]}


def _human(data: dict) -> str:
    head = "preview (nothing written; add --apply to write)" if data["dry_run"] else f"applied as run {data['run_id']}"
    lines = [f"{head}: {data['rows']} row(s) read, {data['created']} to create" if data["dry_run"] else
             f"{head}: {data['rows']} row(s) read, {data['created']} created",
             f"  updated {data['updated']}, unchanged {data['unchanged']}, skipped (locked) {data['skipped_locked']}, "
             f"unmatched {data['unmatched']}, rejected {len(data['errors']) - data['unmatched']}"]
    lines += [f"  row {e['row']}: {e['message']}" for e in data["errors"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    engine = open_database()
    actor = cli_actor()
    try:
        _plan, result = import_subscriptions(engine, args.file, sheet=args.sheet, apply=args.apply,
                                             user=actor.email, role=actor.role)
    except InputError as exc:
        exc.payload = _empty_result(not args.apply, str(exc))
        raise
    emit(args, result, _human)
    return 0
