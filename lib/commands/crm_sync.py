"""`manage.py crm-sync --source vtiger|simplycrm [--apply] [--write-back] [--json]`."""

from __future__ import annotations

import argparse

from lib.commands._jobs import counts_line, finish_command
from lib.crm_sync import SOURCES, run_crm_sync
from lib.db import open_database
from lib.roles import cli_actor

NAME = "crm-sync"
HELP = "fill missing CVR numbers from the CRM and link accounts (preview unless --apply)"
KEYS = ("source", "accounts", "updated", "unchanged", "conflicts", "unmatched", "linked", "ambiguous")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=SOURCES, help="which CRM to read")
    parser.add_argument("--apply", action="store_true", help="write the confident links and CVR numbers")
    parser.add_argument("--write-back", action="store_true",
                        help="also fill the CRM's empty CVR fields from the Hub (needs CRM_WRITE_BACK=true; "
                             "previewed unless --apply)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _human(payload: dict) -> str:
    text = counts_line(payload, KEYS)
    wb = payload.get("write_back")
    if wb:
        text += (f"\nwrite-back to the CRM field {wb['cvr_field']}: proposed {wb['proposed']}, written {wb['written']}, "
                 f"skipped {wb['skipped']}" + (f" (run {wb['run_id']})" if wb.get("run_id") else " (preview)"))
        text += "".join(f"\n  {e.get('account_id')}: {e['message']}" for e in wb["errors"][:50])
    return text


def run(args: argparse.Namespace) -> int:
    engine = open_database()
    payload = run_crm_sync(engine, source=args.source, apply=args.apply, actor=cli_actor(),
                           write_back=args.write_back)
    return finish_command(args, payload, _human)
