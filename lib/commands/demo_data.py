"""`manage.py demo-data [--json]`: demo customers for an empty Hub, matching `manage.py sandbox`."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.db import open_database
from lib.demo_data import load_demo_data
from lib.roles import cli_actor

NAME = "demo-data"
HELP = "fill an empty Hub with demo customers that match the sandbox simulators"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _human(data: dict) -> str:
    return (f"added {data['customers']} demo customers ({data['with_cvr']} with CVR, {data['without_cvr']} without; "
            f"{data['linked_economic']} linked to e-conomic, {data['linked_vtiger']} to vTiger, "
            f"{data['linked_simplycrm']} to Simply-CRM)")


def run(args: argparse.Namespace) -> int:
    actor = cli_actor()
    emit(args, load_demo_data(open_database(), user=actor.email, role=actor.role), _human)
    return 0
