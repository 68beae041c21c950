"""The database cache of cvrapi.dk answers, by query, so the same question never costs quota twice; and the
count of requests sent per quota day (table cvr_requests), which is what "lookups left today" is based on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from lib.db import write_transaction

FOUND = "found"
NOT_FOUND = "not_found"
QUOTA_DAY_ZONE = "Europe/Copenhagen"  # cvrapi.dk is Danish: its "per day" is a Danish day


def quota_day(now: datetime | None = None) -> str:
    """Today's date in Denmark (ISO), the key of the daily request count."""
    try:
        zone = ZoneInfo(QUOTA_DAY_ZONE)
    except Exception:  # noqa: BLE001 - no tz database: UTC days are close enough
        zone = UTC
    return (now or datetime.now(UTC)).astimezone(zone).date().isoformat()


def record_requests(engine: Engine, count: int = 1) -> None:
    """Add `count` requests sent to cvrapi.dk to today's tally (one atomic upsert; both databases)."""
    if count <= 0:
        return
    with write_transaction(engine) as conn:
        conn.execute(text(
            "INSERT INTO cvr_requests (day, requests, last_at) VALUES (:d, :n, :t) "
            "ON CONFLICT (day) DO UPDATE SET requests = cvr_requests.requests + :n, last_at = :t"
        ), {"d": quota_day(), "n": int(count), "t": _now()})


def requests_today(engine: Engine) -> int:
    """Requests sent to cvrapi.dk today (Danish day), as far as this database knows."""
    with engine.connect() as conn:
        value = conn.execute(text("SELECT requests FROM cvr_requests WHERE day = :d"), {"d": quota_day()}).scalar()
    return int(value or 0)


@dataclass(frozen=True)
class CacheEntry:
    status: str  # FOUND or NOT_FOUND
    response: Any  # the decoded JSON answer (None for NOT_FOUND)
    fetched_at: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)  # stored as naive UTC on both databases


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    return datetime.fromisoformat(str(value))


def query_key(kind: str, value: str) -> str:
    """The cache key for one question: `vat:13585628`, `name:blåbærgården ærø aps` (case and spaces folded)."""
    return f"{kind}:{' '.join(str(value).casefold().split())}"


class CvrCache:
    """Fresh answers (younger than `max_age_days`) from the `cvr_cache` table."""

    def __init__(self, engine: Engine, max_age_days: int = 30) -> None:
        self.engine = engine
        self.max_age = timedelta(days=max_age_days)

    def get(self, key: str) -> CacheEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                text("SELECT status, response, fetched_at FROM cvr_cache WHERE query_key = :k"), {"k": key}
            ).first()
        if row is None:
            return None
        fetched_at = _as_datetime(row.fetched_at)
        if _now() - fetched_at > self.max_age:
            return None
        return CacheEntry(row.status, json.loads(row.response) if row.response else None, fetched_at)

    def put(self, key: str, status: str, response: Any = None) -> None:
        params = {
            "k": key, "s": status, "r": None if response is None else json.dumps(response, ensure_ascii=False),
            "t": _now(),
        }
        with write_transaction(self.engine) as conn:
            updated = conn.execute(
                text("UPDATE cvr_cache SET status = :s, response = :r, fetched_at = :t WHERE query_key = :k"), params
            ).rowcount
            if updated:
                return
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    text("INSERT INTO cvr_cache (query_key, status, response, fetched_at) VALUES (:k, :s, :r, :t)"),
                    params,
                )
        except IntegrityError:
            pass  # another process cached the same answer a moment ago

    def purge(self) -> int:
        """Delete expired answers; returns how many."""
        with write_transaction(self.engine) as conn:
            return conn.execute(
                text("DELETE FROM cvr_cache WHERE fetched_at < :cutoff"), {"cutoff": _now() - self.max_age}
            ).rowcount
