"""Stored previews: a job's plan kept server-side so a person can come back to it and approve rows later.

A plan can be applied until PLAN_TTL_MINUTES after it was made, and never after the data it read changed
(its fingerprint differs from the database's now) or once it was applied.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.audit import utcnow
from lib.config import get_settings
from lib.db import as_datetime, write_transaction
from lib.errors import InputError


class PlanUnusable(InputError):
    """The stored preview expired, was applied, or the data it read changed: preview again."""


def _json(data) -> str:
    return json.dumps(data, default=str, ensure_ascii=False)


def store_plan(engine: Engine, kind: str, *, run_id: int | None, user: str, parameters: dict, summary: dict,
               plan: dict, fingerprint: str) -> int:
    now = utcnow()
    expires = now + timedelta(minutes=get_settings().plan_ttl_minutes)
    with write_transaction(engine) as conn:
        return conn.execute(
            text("INSERT INTO job_plans (kind, run_id, created_by, created_at, expires_at, fingerprint, parameters, "
                 "summary, plan) VALUES (:k, :r, :u, :now, :exp, :f, :p, :s, :plan) RETURNING id"),
            {"k": kind, "r": run_id, "u": user, "now": now, "exp": expires, "f": fingerprint,
             "p": _json(parameters), "s": _json(summary), "plan": _json(plan)},
        ).scalar_one()


_COLUMNS = "id, kind, run_id, created_by, created_at, expires_at, fingerprint, parameters, summary, applied_run_id"


def _decode(row, with_plan: bool) -> dict:
    out = dict(row)
    for key in ("created_at", "expires_at"):
        out[key] = as_datetime(out[key])
    for key in ("parameters", "summary", *(("plan",) if with_plan else ())):
        out[key] = json.loads(out[key] or "{}")
    return out


def get_plan(engine: Engine, plan_id: int, *, with_plan: bool = True) -> dict:
    columns = _COLUMNS + (", plan" if with_plan else "")
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {columns} FROM job_plans WHERE id = :id"), {"id": plan_id}).mappings().first()
    if row is None:
        raise PlanUnusable(f"there is no stored preview {plan_id}")
    return _decode(row, with_plan)


def plan_for_run(engine: Engine, run_id: int) -> dict | None:
    """The plan a preview run stored (without the plan body), or None."""
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {_COLUMNS} FROM job_plans WHERE run_id = :r ORDER BY id DESC"),
                           {"r": run_id}).mappings().first()
    return _decode(row, False) if row else None


def customers_fingerprint(engine: Engine) -> str:
    """What a plan that read the customers depends on: their count, newest id and last change.

    Any customer added, deleted or edited since (by a person, an import, another job) changes it.
    """
    with engine.connect() as conn:
        row = conn.execute(text("SELECT count(*), max(id), max(updated_at) FROM customers")).one()
    return json.dumps([str(v) for v in row])


def why_unusable(plan: dict, fingerprint: str | None) -> str | None:
    """Why the stored plan may not be applied any more, or None."""
    if plan["applied_run_id"]:
        return f"this preview was applied as run {plan['applied_run_id']}"
    if utcnow() > plan["expires_at"]:
        return (f"this preview expired at {plan['expires_at']:%H:%M} UTC "
                f"(previews are kept {get_settings().plan_ttl_minutes} minutes)")
    if fingerprint is not None and fingerprint != plan["fingerprint"]:
        return "the data this preview read has changed since"
    return None


def claim_plan(engine: Engine, plan_id: int, run_id: int) -> None:
    """Mark the plan applied by `run_id`; refuses a plan already claimed (one apply per preview)."""
    with write_transaction(engine) as conn:
        claimed = conn.execute(
            text("UPDATE job_plans SET applied_run_id = :r WHERE id = :id AND applied_run_id IS NULL"),
            {"r": run_id, "id": plan_id},
        ).rowcount
    if not claimed:
        raise PlanUnusable(f"stored preview {plan_id} was already applied; preview again")


def delete_expired(engine: Engine, older_than: timedelta = timedelta(days=7)) -> int:
    """Forget stored previews that expired more than `older_than` ago; returns how many."""
    with write_transaction(engine) as conn:
        return conn.execute(text("DELETE FROM job_plans WHERE expires_at < :t"),
                            {"t": utcnow() - older_than}).rowcount


def usable_plan(engine: Engine, plan_id: int, kind: str, *, fingerprint: str | None, with_plan: bool = True,
                again: str = "preview again") -> dict:
    """Stored preview `plan_id` (with its body unless `with_plan` is False): refused (PlanUnusable, ending
    with `again`) when it is another kind's, expired, applied already, or the data it read changed
    (`fingerprint` differs)."""
    stored = get_plan(engine, int(plan_id), with_plan=with_plan)
    if stored["kind"] != kind:
        raise PlanUnusable(f"stored preview {plan_id} is a {stored['kind']} preview, not {kind}")
    problem = why_unusable(stored, fingerprint)
    if problem:
        raise PlanUnusable(f"{problem}; {again}")
    return stored


def take_plan(engine: Engine, plan_id: int, kind: str, *, fingerprint: str | None, run_id: int) -> dict:
    """The body of stored preview `plan_id` once `usable_plan` allows it, claimed for `run_id`."""
    stored = usable_plan(engine, plan_id, kind, fingerprint=fingerprint)
    claim_plan(engine, stored["id"], run_id)
    return stored["plan"]
