"""The command line behind `python manage.py`: argparse, JSON output and exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal

from lib.commands import COMMANDS
from lib.errors import HubError
from lib.logging_setup import configure_logging


def _json_default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def to_json(data: dict) -> str:
    return json.dumps(data, default=_json_default, ensure_ascii=False, indent=2)


def emit(args: argparse.Namespace, data: dict, human: Callable[[dict], str] | str | None = None) -> None:
    """Print one JSON object with --json, else the human summary (or the JSON when there is none)."""
    if getattr(args, "json", False) or human is None:
        print(to_json(data))
        return
    print(human(data) if callable(human) else human)


def error_line(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="manage.py", description="BMC Hub command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        try:
            command = importlib.import_module(f"lib.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lib.commands.{module_name}":
                continue  # not built yet
            raise
        command_parser = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(command_parser)
        command_parser.set_defaults(handler=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        configure_logging()
        return int(args.handler(args) or 0)
    except HubError as exc:
        error_line(str(exc))
        if getattr(args, "json", False) and getattr(exc, "payload", None) is not None:
            print(to_json(exc.payload))
        return exc.exit_code
    except KeyboardInterrupt:
        error_line("interrupted")
        return 1
