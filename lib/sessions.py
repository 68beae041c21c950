"""Server-side sessions: who signed in, and sign-out / revocation that holds against a copied cookie.

Streamlit's identity cookie is self-contained (the ID token's claims, signed with cookie_secret, valid for
30 days), so the Hub keeps its own record in the database, shared by every replica: a per-person
`not_before` time. An identity whose `iat` (issued-at) is before it is refused, and so is one older than
SESSION_MAX_AGE_HOURS. Signing out ends the person's sessions in every browser.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, DateTime, MetaData, Table, Text, case, or_, select, text
from sqlalchemy.engine import Engine

from lib.errors import InputError
from lib.roles import Actor, require_role

log = logging.getLogger("hub.signin")

sign_ins = Table(
    "sign_ins", MetaData(),
    Column("person", Text, primary_key=True), Column("role", Text), Column("provider", Text),
    Column("first_seen_at", DateTime), Column("last_seen_at", DateTime), Column("not_before", DateTime),
    Column("ended_how", Text), Column("ended_by", Text),
)
SIGNED_OUT, REVOKED = "signed-out", "revoked"


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)  # naive UTC on both databases


def issued_at(claims: Mapping[str, Any]) -> datetime | None:
    """The identity's `iat` claim as naive UTC, or None when it has none (or an unusable one)."""
    value = claims.get("iat")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None


def session_problem(engine: Engine, person: str, issued: datetime | None, max_age_hours: float,
                    now: datetime | None = None) -> str | None:
    """Why this signed-in identity may not go on (signed out, revoked, too old), or None. Reads only."""
    now = now or utcnow()
    if issued is None:
        return "Your sign-in carries no issue time (iat), so its age cannot be checked. Sign in again."
    if now - issued > timedelta(hours=max_age_hours):
        return f"Your sign-in is older than {max_age_hours:g} hours (SESSION_MAX_AGE_HOURS). Sign in again."
    with engine.connect() as conn:
        row = conn.execute(select(sign_ins.c.not_before, sign_ins.c.ended_how, sign_ins.c.ended_by)
                           .where(sign_ins.c.person == person)).first()
    if row is None or row.not_before is None or issued >= row.not_before:
        return None
    when = f"{row.not_before:%Y-%m-%d %H:%M} UTC"
    if row.ended_how == REVOKED:
        return f"An admin ({row.ended_by}) ended your sessions at {when}. Sign in again."
    return f"You signed out at {when}; this browser's sign-in is no longer valid. Sign in again."


def record_seen(engine: Engine, person: str, role: str, provider: str, now: datetime | None = None) -> None:
    """Insert or refresh the person's row: first and last seen, and the role they got this time."""
    now = now or utcnow()
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sign_ins (person, role, provider, first_seen_at, last_seen_at) "
            "VALUES (:person, :role, :provider, :now, :now) "
            "ON CONFLICT (person) DO UPDATE SET last_seen_at = excluded.last_seen_at, role = excluded.role, "
            "provider = excluded.provider"
        ), {"person": person, "role": role, "provider": provider, "now": now})


def _end(engine: Engine, person: str, not_before: datetime, how: str, by: str) -> datetime:
    later = or_(sign_ins.c.not_before.is_(None), sign_ins.c.not_before < not_before)
    with engine.begin() as conn:  # never lowers not_before: that would let an ended session back in
        done = conn.execute(
            sign_ins.update().where(sign_ins.c.person == person)
            .values(not_before=case((later, not_before), else_=sign_ins.c.not_before),
                    ended_how=case((later, how), else_=sign_ins.c.ended_how),
                    ended_by=case((later, by), else_=sign_ins.c.ended_by))
        ).rowcount
    if not done:
        raise InputError(f"no sign-in recorded for {person!r}: nothing to revoke")
    log.info("sessions ended", extra={"person": person, "how": how, "by": by,
                                      "not_before": not_before.isoformat(timespec="seconds")})
    return not_before


def sign_out(engine: Engine, actor: Actor, issued: datetime | None, now: datetime | None = None) -> datetime:
    """The person signs out: every identity of theirs issued up to now (this one included) is refused."""
    now = now or utcnow()
    not_before = max(now, issued + timedelta(seconds=1)) if issued else now
    return _end(engine, actor.email, not_before, SIGNED_OUT, actor.email)


def revoke_sessions(engine: Engine, person: str, actor: Actor, now: datetime | None = None) -> datetime:
    """An admin ends every session `person` has now; they must sign in again. Raises NotAllowed otherwise."""
    require_role(actor.role, "admin", "revoke sessions")
    return _end(engine, person.strip(), now or utcnow(), REVOKED, actor.email)


def list_sign_ins(engine: Engine, days: float | None = None, limit: int = 500) -> list[dict[str, Any]]:
    """People who signed in, most recently seen first (within `days` when given)."""
    query = select(sign_ins).order_by(sign_ins.c.last_seen_at.desc(), sign_ins.c.person).limit(limit)
    if days is not None:
        query = query.where(sign_ins.c.last_seen_at >= utcnow() - timedelta(days=days))
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
