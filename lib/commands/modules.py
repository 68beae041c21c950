"""`manage.py modules list|enable|disable|health|remove-data|settings|set [--json]`: the Modules page, from a shell.

Every action that changes something needs the admin role (HUB_CLI_ROLE); list, health and settings only read.
"""

from __future__ import annotations

import argparse

from lib.cli import emit
from lib.config import get_settings
from lib.db import open_database
from lib.errors import InputError
from lib.modules import (
    disable_module,
    enable_module,
    health_report,
    module_config,
    module_report,
    record_new_modules,
    removal_plan,
    remove_module_data,
    set_module_setting,
)
from lib.roles import cli_actor, require_role

NAME = "modules"
HELP = "list, enable, disable, health-check modules, edit their settings, or remove a disabled module's data"
LIST_KEYS = ("name", "version", "enabled", "status", "error", "title", "description", "installed_version",
             "dependencies", "dependants", "pending_migrations", "required_role", "page_views", "warnings",
             "changed_at", "changed_by", "path")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="every discovered module with its status")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("health", help="run the health checks (exit 1 when an enabled module is unhealthy)")
    p.add_argument("name", nargs="?", help="only this module")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    for action, help_text in (("enable", "apply the module's pending migrations, then enable it"),
                              ("disable", "disable the module (its dependants become unavailable)")):
        p = sub.add_parser(action, help=help_text)
        p.add_argument("name")
        p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("remove-data", help="drop a disabled module's tables and migration history (preview "
                                           "unless --apply)")
    p.add_argument("name")
    p.add_argument("--apply", action="store_true", help="really drop what the preview lists")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("settings", help="a module's settings in effect, with their source (secrets masked)")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("set", help="save one setting (admin; audited, undo with `manage.py undo RUN`)")
    p.add_argument("name")
    p.add_argument("key")
    p.add_argument("value", help="true/false, a number, a choice or text")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _list(args: argparse.Namespace) -> int:
    rows = module_report(open_database())
    data = {"modules": [{k: r[k] for k in LIST_KEYS} for r in rows], "modules_enabled": get_settings().modules_enabled}

    def human(d: dict) -> str:
        if not d["modules_enabled"]:
            return "the module system is switched off (MODULES_ENABLED=false)"
        lines = [f"{'name':24} {'version':10} {'status':12} error"]
        lines += [f"{r['name']:24} {r['version'] or '-':10} {r['status']:12} {r['error'] or ''}" for r in d["modules"]]
        return "\n".join(lines) if d["modules"] else "no modules found"

    emit(args, data, human)
    return 0


def _health(args: argparse.Namespace) -> int:
    rows = health_report(open_database())
    if args.name:
        rows = [r for r in rows if r["name"] == args.name]
        if not rows:
            raise InputError(f"no module named {args.name!r}")
    emit(args, {"modules": rows}, lambda d: "\n".join(
        f"{ {True: 'healthy', False: 'UNHEALTHY', None: '-'}[r['healthy']]:10} {r['name']:24} {r['message']}"
        for r in d["modules"]) or "no modules found")
    return 1 if any(r["healthy"] is False and r["enabled"] for r in rows) else 0


def _enable(args: argparse.Namespace) -> int:
    actor = cli_actor()
    require_role(actor.role, "admin", "enable modules")
    engine = open_database()
    record_new_modules(engine)
    applied = enable_module(engine, args.name, actor)
    files = [f.filename for f in applied]
    emit(args, {"name": args.name, "enabled": True, "applied_migrations": files},
         f"enabled {args.name}" + (f" (applied {', '.join(files)})" if files else ""))
    return 0


def _disable(args: argparse.Namespace) -> int:
    down = disable_module(open_database(), args.name, cli_actor())
    emit(args, {"name": args.name, "enabled": False, "unavailable_dependants": down},
         f"disabled {args.name}" + (f"; now unavailable too: {', '.join(down)}" if down else ""))
    return 0


def _remove_data(args: argparse.Namespace) -> int:
    engine = open_database()
    actor = cli_actor()
    plan = removal_plan(engine, args.name, actor)
    if args.apply:
        remove_module_data(engine, args.name, plan, actor)
    data = {"name": args.name, "dry_run": not args.apply, "tables": plan.tables, "views": plan.views,
            "other_objects": plan.other, "migration_rows": plan.migration_rows}
    verb = "dropped" if args.apply else "would drop"
    emit(args, data, f"{verb}: tables {', '.join(plan.tables) or 'none'}; views {', '.join(plan.views) or 'none'}; "
                     f"{plan.migration_rows} module_migrations row(s)" + ("" if args.apply else "  (add --apply)"))
    return 0


def _settings(args: argparse.Namespace) -> int:
    config = module_config(args.name, engine=open_database())
    if not config:
        raise InputError(f"module {args.name!r} has no settings (or does not exist)")
    emit(args, {"name": args.name, "settings": config}, lambda d: "\n".join(
        f"{k:24} {str(v['value']):20} {v['source']}{' (locked)' if v['locked'] else ''}"
        for k, v in d["settings"].items()))
    return 0


def _set(args: argparse.Namespace) -> int:
    result = set_module_setting(open_database(), args.name, args.key, args.value, cli_actor())
    emit(args, {"name": args.name, **result},
         f"saved {args.name} {args.key} (run {result['run_id']}; undo: python manage.py undo {result['run_id']})"
         if result["changed"] else f"{args.name} {args.key} already has that value; nothing written")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "health": _health, "enable": _enable, "disable": _disable,
            "remove-data": _remove_data, "settings": _settings, "set": _set}[args.action](args)
