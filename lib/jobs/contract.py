"""The job contract: what a job declares, what it gets from the runner, what it returns.

A job is a class with these attributes and methods (subclass `Job`). Core jobs (lib/jobs/*.py) and module
jobs (module.json "jobs") implement the same contract; lib/jobs/registry.py finds them by kind, and
lib/jobs/runner.py runs them. Rules a job must keep, so any process (the CLI, a page, a worker process)
can run it:

- It is constructible from the registry by kind name alone: `registry.get_job(kind)` takes no arguments.
- `params` (what `plan` takes, what `params_from_args` returns) and `approved` (a set of proposal keys) are
  JSON-serialisable: a worker process gets them as JSON, builds the job by kind and calls the runner.
- `plan` writes nothing to the Hub's tables; it may call outside services (through clients it registers
  with `ctx.closing`, which the runner closes on every path).
- Proposals carry stable keys: the same data planned twice gives the same keys, so an approval made on a
  preview still names the same proposal when the apply plans again.
- `write_row` writes ONE proposal on the connection it is given, inside a SAVEPOINT the runner opened. To
  skip the row it raises lib.errors.RowError(message, key=...) (an IntegrityError is treated the same); the
  runner rolls back the savepoint, reports the row and goes on. It re-checks the row against the database
  as it is now (inside the write transaction), never against a snapshot read earlier. With `ctx.dry_run`
  it checks only and writes nothing.
- A job that writes in bulk (the import's COPY) overrides `apply` instead of `write_row`; it still gets
  the run, progress and cancellation from `ctx`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlalchemy.engine import Connection, Engine

from lib.db import write_transaction
from lib.roles import Actor
from lib.runs import RunCancelled

ProgressCallback = Callable[[int, int, str], None]
NOT_IN_PLAN = "not in the plan (any more); nothing written"
PROGRESS_STORE_SECONDS = 0.25  # the runs table gets a progress row at most this often (pages poll it)


JobCancelled = RunCancelled  # someone pressed Cancel: the runner stops at the next chunk, completed chunks stay


@dataclass
class JobContext:
    """What a job gets from the runner: the database, who acts, the run, progress and cancellation."""

    engine: Engine
    actor: Actor
    dry_run: bool = True
    run: Any = None  # lib.runs.Run while applying; None in a preview
    on_progress: ProgressCallback | None = None
    cancel_check: Callable[[], bool] | None = None
    _closers: list[Callable[[], Any]] = field(default_factory=list, repr=False)
    _stored: float = field(default=0.0, repr=False)

    @property
    def run_id(self) -> int | None:
        return getattr(self.run, "id", None)

    @property
    def user(self) -> str:
        return self.actor.email

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Report progress to the caller's callback, and to the run's row in the database (applies) at most
        every PROGRESS_STORE_SECONDS, the first and last report always. Call it between transactions."""
        now = time.monotonic()
        store = self.run is not None and (done <= 0 or done >= total or now - self._stored >= PROGRESS_STORE_SECONDS)
        if store:
            self._stored = now
            self.run.progress(done, total, message)  # Run.progress calls on_progress too
        elif self.on_progress is not None:
            self.on_progress(done, total, message)

    def progress_in_transaction(self, done: int, total: int, message: str = "") -> None:
        """Progress from inside one long write transaction (the import's one pass): to the callback only. On
        SQLite that transaction is the one writer; a job that wants stored progress commits in chunks."""
        if self.on_progress is not None:
            self.on_progress(done, total, message)

    def cancelled(self) -> str | bool | None:
        """Who asked to stop (truthy), else falsy: `cancel_check` when given, else the run's Cancel request."""
        if self.cancel_check is not None:
            return self.cancel_check()
        asked = getattr(self.run, "cancel_requested", None)
        return asked() if callable(asked) and self.run_id is not None else None

    def check_cancel(self) -> None:
        """Raise RunCancelled when someone asked to stop (the runner calls it between chunks)."""
        who = self.cancelled()
        if who:
            raise JobCancelled(f"cancelled by {who}" if isinstance(who, str) else "cancelled by request")

    def closing(self, resource):
        """Register a client (anything with .close()) for the runner to close on every path; returns it."""
        self._closers.append(resource.close)
        return resource

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for close in reversed(closers):
            close()


@dataclass
class Plan:
    """What a job would do. `proposals` are the job's own objects, each with a stable `key`; `native` is the
    job's plan object (pages may show it); `stopped` says an outside service stopped the planning."""

    kind: str
    params: dict
    proposals: list[Any]
    native: Any = None
    errors: list[dict] = field(default_factory=list)
    stopped: str | None = None

    def keys(self) -> set[str]:
        return {p.key for p in self.proposals}


@dataclass
class ApplyOutcome:
    """What the writing did, row by row: the keys written, the rows reported, the job's own tallies."""

    written: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    cancelled: bool = False

    def error(self, message: str, **keys) -> None:
        """Report a row: `keys` name it ({"customer_id": 12}, {"row": 7}, {"account_id": "11x5"})."""
        self.errors.append({**keys, "message": message})


class Job:
    """The contract. Override the class attributes, `plan`, `writes`, `write_row` and `payload`."""

    kind: ClassVar[str]  # the run kind and the CLI command: "cvr-lookup", "cvr_watch.refresh"
    module: str | None = None  # set by the registry for a module's job
    title: ClassVar[str]  # for people: the navigation and the job panel
    help: ClassVar[str] = ""  # one line for `manage.py --help` and the README's command table
    usage: ClassVar[str] = ""  # the arguments as the README shows them, e.g. "FILE [--sheet NAME]"
    doc: ClassVar[str] = ""  # the README's "does" column (default: help)
    required_role: ClassVar[str] = "operator"  # to apply; a preview needs only viewer
    action: ClassVar[str] = "run this job"  # "your role may not <action>"
    page: ClassVar[str | None] = None  # a core job's page file (app_pages/…); None: no page of its own
    icon: ClassVar[str] = ":material/play_circle:"
    count_keys: ClassVar[tuple[str, ...]] = ()  # the interface's counts, in the order the CLI prints them
    key_field: ClassVar[str] = "customer_id"  # the key an error row carries: "row", "customer_id", "account_id"
    chunk_rows: ClassVar[int] = 500  # rows per write transaction (progress and cancellation between chunks)
    plan_in_run: ClassVar[bool] = False  # True: an apply's planning is part of the run (long outside calls)
    undoable: ClassVar[bool] = True  # False: it writes outside the Hub (a CRM), which `undo` cannot revert

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The job's own CLI arguments (the runner's command adds --apply and --json)."""

    def params_from_args(self, args: argparse.Namespace) -> dict:
        """The JSON-serialisable parameters `plan` takes, from the parsed CLI arguments."""
        return {}

    def plans_in_run(self, params: dict) -> bool:
        """Whether an apply with these parameters plans inside its run (default: `plan_in_run`)."""
        return self.plan_in_run

    def check(self, ctx: JobContext, **params) -> None:
        """Refuse bad parameters or configuration (InputError / ConfigError, exit 2) before any run is
        recorded or any request made; may open the clients `plan` uses (register them with ctx.closing)."""

    def plan(self, ctx: JobContext, **params) -> Plan:
        """Read (the Hub, files, outside services) and decide; writes nothing."""
        raise NotImplementedError

    def check_plan(self, ctx: JobContext, plan: Plan) -> None:
        """Refuse a plan made earlier (a preview) that the data has outrun, before a run is recorded."""

    def apply_in_one_pass(self, ctx: JobContext, **params) -> Plan | None:
        """Optional: plan and write in one pass inside the run (the import's --apply); None when not offered."""
        return None

    def writes(self, plan: Plan, approved: set[str]) -> list[Any]:
        """The proposals an apply writes: the confident ones plus the approved ones it may accept."""
        return list(plan.proposals)

    def refuse_approval(self, proposal: Any) -> str | None:
        """Why an approved proposal cannot be accepted (reported as an error row), or None."""
        return None

    def error_keys(self, proposal: Any) -> dict:
        """What an error row about `proposal` carries besides the message, e.g. {"customer_id": 12}."""
        return {self.key_field: getattr(proposal, self.key_field, proposal.key)}

    def keys_of_key(self, key: str) -> dict:
        """The error row's keys for an approved key the plan does not hold (the key itself by default)."""
        return {self.key_field: key}

    def integrity_message(self, proposal: Any, exc: Exception) -> str:
        """The error row for a row the database refused (unique or check constraint)."""
        return "the database refused the change (duplicate or invalid value); nothing written"

    def run_parameters(self, params: dict, plan: Plan | None, approved: set[str]) -> dict:
        """What the run record keeps as its parameters (the Runs page shows them)."""
        return {**params, "approved": sorted(approved)}

    def transaction(self, ctx: JobContext) -> AbstractContextManager[Connection]:
        """One chunk's write transaction: a module's job gets its confined connection (lib.modules)."""
        module = getattr(self, "module", None)
        if module:
            from lib.modules import module_connection

            return module_connection(module, ctx.engine)
        return write_transaction(ctx.engine)

    def write_row(self, ctx: JobContext, conn: Connection, proposal: Any, outcome: ApplyOutcome) -> None:
        """Write one proposal (inside the runner's savepoint); raise RowError to skip it."""
        raise NotImplementedError

    def apply(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> None:
        """Write the plan. The default: the runner's chunked loop with a savepoint per row over `writes`."""
        from lib.jobs.runner import write_rows

        write_rows(self, ctx, self.writes(plan, approved), outcome)

    def payload(self, ctx: JobContext, plan: Plan, approved: set[str], outcome: ApplyOutcome) -> dict:
        """The interface's JSON object (lib.jobs.payload.job_payload) for this preview or apply."""
        raise NotImplementedError

    def after_run(self, ctx: JobContext, plan: Plan, payload: dict) -> dict:
        """Follow-up work that is its own run (the CRM write-back), after this run closed; the payload."""
        return payload

    def stats(self, payload: dict, plan: Plan) -> dict:
        """What the run record keeps (the Runs page shows it)."""
        return {k: payload[k] for k in self.count_keys if k in payload}

    def failure_payload(self, dry_run: bool, message: str) -> dict | None:
        """The JSON object `--json` prints when the job is refused (exit 2), when it has one of its own."""
        return None

    def summary(self, payload: dict) -> str:
        """The CLI's text for people (without --json)."""
        mode = ("preview (nothing written; add --apply to write)" if payload["dry_run"]
                else f"applied as run {payload['run_id']}")
        counts = ", ".join(f"{k.replace('_', ' ')}: {payload[k]}" for k in self.count_keys if k in payload)
        lines = [f"{mode}: {counts}"]
        errors = payload.get("errors", [])
        lines += [f"  {e.get('row') or e.get('customer_id') or e.get('account_id') or ''}: {e['message']}"
                  for e in errors[:50]]
        if len(errors) > 50:
            lines.append(f"  … and {len(errors) - 50} more (use --json for all)")
        if payload.get("stopped"):
            lines.append(f"stopped early: {payload['stopped']}")
        return "\n".join(lines)


def proposal_keys(proposals: Iterable[Any]) -> list[str]:
    return [p.key for p in proposals]
