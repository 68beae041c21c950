"""`manage.py cvr-lookup [--limit N] [--apply] [--json]`: find CVR numbers for customers without one."""

from __future__ import annotations

import argparse

from lib.commands._jobs import counts_line, finish_command
from lib.cvr_lookup import COUNT_KEYS, run_cvr_lookup
from lib.db import open_database
from lib.errors import InputError
from lib.roles import cli_actor

NAME = "cvr-lookup"
HELP = "find CVR numbers for customers without one (cvrapi.dk, cached; preview unless --apply)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, metavar="N", help="consider at most N customers (never-asked ones first)")
    parser.add_argument("--apply", action="store_true", help="write the confident CVR numbers (default: preview)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _human(payload: dict) -> str:
    lines = [counts_line(payload, COUNT_KEYS)]
    for p in payload["proposals"]:
        if p["outcome"] == "ambiguous":
            lines.append(f"  needs a person: customer {p['customer_id']} {p['customer_name']!r} → "
                         f"{p['company_name']} (CVR {p['cvr']}): {p['reason']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be at least 1, got {args.limit}")
    engine = open_database()
    payload = run_cvr_lookup(engine, apply=args.apply, actor=cli_actor(), limit=args.limit)
    return finish_command(args, payload, _human)
