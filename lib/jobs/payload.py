"""The JSON object every job returns (interface.md): run_id, dry_run, the job's counts, errors, `stopped`."""

from __future__ import annotations


def job_payload(*, run_id: int | None, dry_run: bool, errors: list[dict], stopped: str | None = None,
                **counts) -> dict:
    """The interface's JSON object: run_id, dry_run, errors, each job's counts; `stopped` when a service stopped it."""
    payload = {"run_id": run_id, "dry_run": dry_run, **counts, "errors": errors}
    if stopped:
        payload["stopped"] = stopped
    return payload
