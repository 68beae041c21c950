"""`manage.py sessions [--days N] [--revoke PERSON] [--json]`: who signed in; end a person's sessions."""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.db import open_database
from lib.roles import cli_actor
from lib.sessions import list_sign_ins, revoke_sessions

NAME = "sessions"
HELP = ("list who signed in (person, role, first and last seen), most recent first; --revoke PERSON ends every "
        "session that person has now (needs the admin role; exit 2 when refused or unknown)")
KEYS = ("person", "role", "provider", "first_seen_at", "last_seen_at", "not_before", "ended_how", "ended_by")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=float, help="only people seen within this many days")
    parser.add_argument("--revoke", metavar="PERSON", help="end every session of this person (their e-mail)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _human(data: dict) -> str:
    if "revoked" in data:
        return f"sessions of {data['revoked']} issued before {data['not_before']:%Y-%m-%d %H:%M:%S} UTC are refused"
    lines = [f"{'person':36} {'role':9} {'last seen':17} ended"]
    for p in data["sign_ins"]:
        ended = f"{p['ended_how']} {p['not_before']:%Y-%m-%d %H:%M} by {p['ended_by']}" if p["not_before"] else ""
        lines.append(f"{p['person']:36} {p['role']:9} {p['last_seen_at']:%Y-%m-%d %H:%M} {ended}".rstrip())
    return "\n".join(lines) if data["sign_ins"] else "nobody signed in yet"


def run(args: argparse.Namespace) -> int:
    engine = open_database()
    if args.revoke:
        when = revoke_sessions(engine, args.revoke, cli_actor())
        emit(args, {"revoked": args.revoke.strip(), "not_before": when}, _human)
        return 0
    rows = list_sign_ins(engine, days=args.days)
    emit(args, {"sign_ins": [{k: r[k] for k in KEYS} for r in rows]}, _human)
    return 0
