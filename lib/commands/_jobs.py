"""How a job command reports: print the payload (one JSON object with --json) and pick the exit code."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lib.cli import emit, error_line
from lib.jobs.runner import exit_code


def finish_command(args: argparse.Namespace, payload: dict, human: Callable[[dict], str]) -> int:
    """Print the result (one JSON object with --json); exit 3 when an outside service stopped the job."""
    emit(args, payload, human)
    code = exit_code(payload)
    if code:
        error_line(f"stopped early: {payload['stopped']}")
    return code


def counts_line(payload: dict, keys: tuple[str, ...]) -> str:
    mode = "preview (nothing written; add --apply to write)" if payload["dry_run"] else f"applied as run {payload['run_id']}"
    counts = ", ".join(f"{k.replace('_', ' ')}: {payload[k]}" for k in keys if k in payload)
    lines = [f"{mode}: {counts}"]
    lines += [f"  {e.get('row') or e.get('customer_id') or e.get('account_id') or ''}: {e['message']}"
              for e in payload["errors"][:50]]
    if len(payload["errors"]) > 50:
        lines.append(f"  … and {len(payload['errors']) - 50} more (use --json for all)")
    if payload.get("stopped"):
        lines.append(f"stopped early: {payload['stopped']}")
    return "\n".join(lines)
