"""`manage.py economic-relink [--apply] [--json]`: link Hub customers to e-conomic customer numbers."""

from __future__ import annotations

import argparse

from lib.commands._jobs import counts_line, finish_command
from lib.db import open_database
from lib.economic_relink import run_economic_relink
from lib.roles import cli_actor

NAME = "economic-relink"
HELP = "link Hub customers to e-conomic customer numbers (reads e-conomic only; preview unless --apply)"
HUMAN_KEYS = ("hub_customers", "economic_customers", "linked", "changed", "unchanged", "ambiguous", "unmatched")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apply", action="store_true",
                        help="write new links, and changed ones whose old number no longer exists in e-conomic")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    engine = open_database()
    payload = run_economic_relink(engine, apply=args.apply, actor=cli_actor())
    return finish_command(args, payload, lambda d: counts_line(d, HUMAN_KEYS))
