"""Job commands, built from the registry: `manage.py KIND [...] [--apply] [--json]` for every core job, and
`manage.py job list [--json]` / `manage.py job run MODULE.JOB [ARGS...] [--apply] [--json]` for modules' jobs."""

from __future__ import annotations

import argparse
from functools import partial

from lib.cli import emit, to_json
from lib.commands._jobs import finish_command
from lib.db import open_database
from lib.errors import HubError
from lib.jobs import runner
from lib.jobs.contract import Job
from lib.jobs.registry import core_jobs, get_job, module_job_specs
from lib.roles import cli_actor

NAME = "job"
HELP = "list every job, or run a module's job: job run MODULE.JOB [--apply] [--json]"


def _add_common(parser: argparse.ArgumentParser, job: Job) -> None:
    parser.add_argument("--apply", action="store_true", help="write the changes (default: preview only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """One subcommand per core job, named by its kind (import-subscriptions, cvr-lookup, …)."""
    for job in core_jobs():
        parser = sub.add_parser(job.kind, help=job.help, description=job.help)
        job.add_arguments(parser)
        _add_common(parser, job)
        parser.set_defaults(handler=partial(run_job, job.kind))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="job_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every job: the core's and the enabled modules'")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    running = actions.add_parser("run", help="preview (or with --apply run) a job: MODULE.JOB or a core kind")
    running.add_argument("kind", metavar="MODULE.JOB")
    running.add_argument("args", nargs=argparse.REMAINDER, help="the job's own arguments, then --apply / --json")


def run(args: argparse.Namespace) -> int:
    if args.job_action == "list":
        return _list(args)
    try:
        return _run_kind(args)
    except HubError as exc:  # main() decided on --json before the job's own arguments were read
        if "--json" in args.args:
            print(to_json({**(getattr(exc, "payload", None) or {}), "error": str(exc)}))
            args.emitted = True
        raise


def _run_kind(args: argparse.Namespace) -> int:
    job = get_job(args.kind)
    parser = argparse.ArgumentParser(prog=f"manage.py job run {args.kind}", description=job.help)
    job.add_arguments(parser)
    _add_common(parser, job)
    job_args = parser.parse_args(args.args)
    return run_job(args.kind, job_args, job=job)


def _list(args: argparse.Namespace) -> int:
    rows = [{"kind": j.kind, "title": j.title, "module": None, "required_role": j.required_role, "help": j.help}
            for j in core_jobs()]
    for kind, (manifest, spec) in module_job_specs().items():
        rows.append({"kind": kind, "title": spec.title, "module": manifest.name, "required_role": "operator",
                     "help": spec.title})
    emit(args, {"jobs": rows}, lambda d: "\n".join(f"{r['kind']:32} {r['title']}" for r in d["jobs"]))
    return 0


def readme_rows() -> list[str]:
    """The README's command-table rows for the jobs (tests/test_docs.py keeps the README equal to them)."""
    rows = []
    for job in core_jobs():
        usage = " ".join(part for part in (job.kind, job.usage, "[--apply] [--json]") if part).replace("|", "\\|")
        rows.append(f"| `{usage}` | {job.doc or job.help} |")
    rows.append("| `job list [--json]` / `job run MODULE.JOB [ARGS] [--apply] [--json]` | every job (core and modules'); "
                "preview or run a module's job (docs/JOBS.md) |")
    return rows


def run_job(kind: str, args: argparse.Namespace, job: Job | None = None) -> int:
    """Preview (or with --apply, run) the job; print its payload; exit 3 when an outside service stopped it."""
    job = job or get_job(kind)
    try:
        params = job.params_from_args(args)
        engine = open_database()
        actor = cli_actor()
        if args.apply:
            _plan, payload = runner.apply(job.kind, params, (), actor, engine=engine, job=job)
        else:
            _plan, payload = runner.preview(job.kind, params, actor, engine=engine, job=job)
    except HubError as exc:
        if getattr(exc, "payload", None) is None:
            exc.payload = job.failure_payload(not args.apply, str(exc))
        raise
    return finish_command(args, payload, job.summary)
