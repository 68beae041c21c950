"""The command line behind `python manage.py`: argparse, JSON output and exit codes."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal

from lib.commands import COMMANDS
from lib.errors import HubError, Terminated
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
        args.emitted = True  # main() prints no second object on the way out
        return
    print(human(data) if callable(human) else human)


def error_line(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def raise_terminated(signum, _frame) -> None:
    raise Terminated(f"terminated by signal {signum}")


class _Parser(argparse.ArgumentParser):
    """argparse that remembers its error, so main() can still print the --json object when it exits 2."""

    last_error: str | None = None

    def error(self, message: str):
        _Parser.last_error = f"{self.prog}: {message}"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="manage.py", description="BMC Hub command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS:
        try:
            command = importlib.import_module(f"lib.commands.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"lib.commands.{module_name}":
                continue  # not built yet
            raise
        if hasattr(command, "add_commands"):  # the core jobs' commands, from the job registry
            command.add_commands(sub)
        command_parser = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(command_parser)
        command_parser.set_defaults(handler=command.run)
    return parser


def _fail(args: argparse.Namespace | None, wants_json: bool, message: str, code: int,
          payload: dict | None = None) -> int:
    """One line on stderr; with --json one object with `error` on stdout (unless the command printed one)."""
    error_line(message)
    if wants_json and not getattr(args, "emitted", False):
        print(to_json({**(payload or {}), "error": message}))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wants_json = "--json" in argv
    args = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # argparse printed usage and the reason (exit 2), or --help (exit 0)
            if exc.code and wants_json:
                print(to_json({"error": _Parser.last_error or "invalid command line"}))
            raise
        wants_json = bool(getattr(args, "json", False)) or "--json" in argv  # also a job's own --json
        configure_logging()
        return int(args.handler(args) or 0)
    except HubError as exc:
        return _fail(args, wants_json, str(exc), exc.exit_code, getattr(exc, "payload", None))
    except KeyboardInterrupt:
        return _fail(args, wants_json, "interrupted", 1)
    except Terminated as exc:
        return _fail(args, wants_json, str(exc), 1)
    except Exception as exc:  # noqa: BLE001 - the last resort: still one line (and one object), details in the log
        logging.getLogger("hub.cli").exception("command failed")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return _fail(args, wants_json, f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__, 1)
