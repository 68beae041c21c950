"""`manage.py doctor [--json]`: one line per check (ok / warn / fail); exit 1 on a failure, 2 for unusable settings."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.doctor import Report, run_doctor
from lib.errors import ConfigError

NAME = "doctor"
HELP = ("check database, migrations, modules, integrations, sign-in and stale runs (reads only; "
        "exit 1 when a check fails, 2 when DATABASE_URL or another setting is unusable)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help='print one JSON object: {"ok", "checks": [...]}')


def _human(report: Report) -> str:
    lines = [f"{c.status:4}  {c.name:22} {c.message}" for c in report.checks]
    fails = sum(c.status == "fail" for c in report.checks)
    warns = sum(c.status == "warn" for c in report.checks)
    lines.append("all checks passed" if not fails and not warns else f"{fails} failed, {warns} warning(s)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    report = run_doctor()
    if report.exit_code == 2:
        failure = next(c for c in report.checks if c.status == "fail")
        error = ConfigError(failure.message)
        error.payload = report.as_dict()
        raise error
    emit(args, report.as_dict(), lambda _data: _human(report))
    return report.exit_code
