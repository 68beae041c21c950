"""One file per `manage.py` subcommand: each defines NAME, HELP, add_arguments(parser) and run(args) -> int.

A file may also define add_commands(subparsers) for commands it builds itself (jobs.py: one per core job).
"""

COMMANDS = [
    "migrate",
    "create_module",
    "modules",
    "jobs",  # one subcommand per core job (from lib/jobs/registry.py), and `job list|run MODULE.JOB`
    "runs",
    "undo",
    "cancel",
    "sandbox",
    "demo_data",
    "customers",
    "doctor",
    "sessions",
]
