"""`manage.py runs [--kind K] [--user U] [--limit N] [--json]`."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.db import open_database
from lib.runs import list_runs

NAME = "runs"
HELP = "list job runs, newest first"
KEYS = ("run_id", "kind", "status", "dry_run", "started_at", "finished_at", "stats", "triggered_by", "error",
        "undone_by_run_id")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", help="only runs of this kind (e.g. cvr-lookup)")
    parser.add_argument("--user", help="only runs triggered by this person")
    parser.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _human(data: dict) -> str:
    lines = [f"{'id':>5}  {'kind':18} {'status':10} {'by':20} started"]
    for r in data["runs"]:
        undone = f"  (undone by {r['undone_by_run_id']})" if r["undone_by_run_id"] else ""
        lines.append(f"{r['run_id']:>5}  {r['kind']:18} {r['status']:10} {r['triggered_by']:20} "
                     f"{r['started_at']:%Y-%m-%d %H:%M}{undone}")
    return "\n".join(lines) if data["runs"] else "no runs yet"


def run(args: argparse.Namespace) -> int:
    rows = list_runs(open_database(), limit=args.limit, kind=args.kind, user=args.user)
    emit(args, {"runs": [{k: r[k] for k in KEYS} for r in rows]}, _human)
    return 0
