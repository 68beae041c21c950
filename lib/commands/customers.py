"""`manage.py customers search|show|create|edit [--json]`: the Customers page from a shell.

create and edit preview by default and write only with --apply (operator role, HUB_CLI_ROLE); bad input —
an unknown field, a value over its limit, a control character, a customer changed since `--expect` — exits 2
with one line and writes nothing.
"""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.customers import (
    FILTERS,
    CustomerInvalid,
    create_customer,
    get_customer,
    same_value,
    search_customers,
    update_customer,
    validate_customer,
)
from lib.db import open_database
from lib.errors import InputError
from lib.roles import cli_actor

NAME = "customers"
HELP = "search, show, create or edit customers (create/edit preview unless --apply)"
COLUMNS = ("id", "name", "cvr_number", "economic_customer_number", "city", "subscriptions_locked")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("search", help="customers whose name contains QUERY (literally), or CVR / number")
    p.add_argument("query", nargs="?", default="")
    p.add_argument("--filter", choices=list(FILTERS), default="all")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("show", help="one customer with every field")
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("create", help="a new customer from FIELD=VALUE pairs (name=... is required)")
    p.add_argument("values", nargs="+", metavar="FIELD=VALUE")
    p.add_argument("--apply", action="store_true", help="write it (without: only check and show)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("edit", help="change the given fields of one customer")
    p.add_argument("id", type=int)
    p.add_argument("values", nargs="+", metavar="FIELD=VALUE")
    p.add_argument("--expect", action="append", default=[], metavar="FIELD=VALUE",
                   help="refuse unless the stored customer still has this value (repeatable)")
    p.add_argument("--apply", action="store_true", help="write it (without: only check and show)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise InputError(f"expected FIELD=VALUE, got {item[:60]!r}")
        out[field.strip()] = value
    return out


def _invalid(exc: CustomerInvalid) -> InputError:
    return InputError("; ".join(f"{field}: {problem}" for field, problem in exc.errors.items()))


def _customer(engine, customer_id: int) -> dict:
    found = get_customer(engine, customer_id)
    if found is None:
        raise InputError(f"there is no customer with id {customer_id}")
    return found


def run(args: argparse.Namespace) -> int:
    engine = open_database()
    actor = cli_actor()
    if args.action == "search":
        page = search_customers(engine, args.query, filter_name=args.filter, page=args.page)
        rows = [{k: r[k] for k in COLUMNS} for r in page.rows]
        emit(args, {"customers": rows, "total": page.total, "page": page.page, "pages": page.pages},
             lambda d: "\n".join([f"{r['id']:>6}  {r['name']}  ({r['cvr_number'] or 'no CVR'})" for r in rows]
                                 + [f"{d['total']} customers · page {d['page']} of {d['pages']}"]))
        return 0
    if args.action == "show":
        customer = _customer(engine, args.id)
        emit(args, {"customer": customer}, lambda d: "\n".join(f"{k:26} {v if v is not None else ''}"
                                                               for k, v in d["customer"].items()))
        return 0
    values = _pairs(args.values)
    try:
        clean = validate_customer(values)
        if args.action == "create":
            if not clean.get("name"):
                raise CustomerInvalid({"name": "a customer needs a name"})
            if not args.apply:
                emit(args, {"dry_run": True, "create": clean}, lambda d: f"would create {d['create']} (--apply writes it)")
                return 0
            new_id = create_customer(engine, values, user=actor.email, role=actor.role)
            emit(args, {"dry_run": False, "customer_id": new_id}, lambda d: f"created customer {d['customer_id']}")
            return 0
        current = _customer(engine, args.id)
        expected = _pairs(args.expect)
        if not args.apply:
            stale = sorted(f for f, v in expected.items() if f in current and not same_value(current[f], v))
            changes = {f: [current.get(f), v] for f, v in clean.items() if not same_value(current.get(f), v)}
            emit(args, {"dry_run": True, "customer_id": args.id, "changes": changes, "changed_meanwhile": stale},
                 lambda d: "\n".join([f"{f}: {old!r} → {new!r}" for f, (old, new) in d["changes"].items()]
                                     or ["nothing would change"]) + (
                     f"\nchanged meanwhile: {', '.join(stale)} (--apply is refused)" if stale else "")
                 + ("" if not d["changes"] else "\n(--apply writes it)"))
            return 0
        changed = update_customer(engine, args.id, values, user=actor.email, role=actor.role, expected=expected)
    except CustomerInvalid as exc:
        raise _invalid(exc) from None
    emit(args, {"dry_run": False, "customer_id": args.id, "changes": {f: list(v) for f, v in changed.items()}},
         lambda d: "\n".join(f"{f}: {old!r} → {new!r}" for f, (old, new) in d["changes"].items()) or "nothing changed")
    return 0
