"""One file per `manage.py` subcommand: each defines NAME, HELP, add_arguments(parser) and run(args) -> int."""

COMMANDS = [
    "migrate",
    "create_module",
    "modules",
    "import_subscriptions",
    "cvr_lookup",
    "economic_relink",
    "crm_sync",
    "runs",
    "undo",
    "sandbox",
    "demo_data",
    "doctor",
    "sessions",
]
