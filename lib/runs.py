"""Job runs: start, report progress, record changes, finish; a per-kind lock in the database; undo."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, column, select, text
from sqlalchemy import table as sa_table
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from lib import tables
from lib.audit import (
    AUDITED_TABLES,
    CORE_AUDITED,
    WHOLE_ROW,
    audit_module_table,
    decode_value,
    delete_rows,
    log_change,
    restore_rows,
    update_row,
    utcnow,
)
from lib.config import get_settings
from lib.db import as_datetime, write_transaction
from lib.errors import HubError, InputError, ServiceError, Terminated
from lib.logging_setup import job_logger
from lib.roles import require_role

ProgressCallback = Callable[[int, int, str], None]
PROGRESS_LOG_SECONDS = 5.0


class RunBusy(InputError):
    """Another run of the same kind is still running."""


class RunCancelled(HubError):
    """A person asked the run to stop (Cancel); what was committed before is kept (exit 1)."""


class UndoRefused(InputError):
    """Undo would overwrite later changes, or the run cannot be undone."""

    def __init__(self, message: str, conflicts: list[dict] | None = None):
        super().__init__(message)
        self.conflicts = conflicts or []


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _json(data: Any) -> str:
    return json.dumps(data, default=str, ensure_ascii=False)


class _Heartbeat(threading.Thread):
    """Refreshes a run's heartbeat every `interval` seconds, whatever the run's own thread is doing."""

    def __init__(self, engine: Engine, run_id: int, interval: float):
        super().__init__(name=f"run-{run_id}-heartbeat", daemon=True)
        self.engine, self.run_id, self.interval = engine, run_id, interval
        self.halt = threading.Event()
        self.failing_since: float | None = None

    def run(self) -> None:
        while not self.halt.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        try:
            now = utcnow()
            with write_transaction(self.engine) as conn:
                held = conn.execute(text("UPDATE run_locks SET heartbeat_at = :now WHERE run_id = :id"),
                                    {"now": now, "id": self.run_id}).rowcount
                conn.execute(text("UPDATE runs SET heartbeat_at = :now WHERE id = :id AND status = 'running'"),
                             {"now": now, "id": self.run_id})
            self.failing_since = None
            if not held:  # closed, or marked stale and taken over: nothing left to keep alive
                self.halt.set()
        except Exception as exc:  # noqa: BLE001 - a lost beat is retried at the next tick; never kill the job
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                job_logger(self.run_id, "heartbeat").warning("heartbeat failed", extra={"error": str(exc)[:300]})
            gone = "no such table" in str(exc) or "does not exist" in str(exc)  # the database was dropped
            if gone or time.monotonic() - self.failing_since > get_settings().run_stale_seconds:
                self.halt.set()  # others consider the run stale by now anyway

    def stop(self) -> None:
        self.halt.set()
        if self is not threading.current_thread():
            self.join(timeout=1.0)  # a beat blocked on the database ends by itself; the run does not wait for it


def stop_heartbeats() -> None:
    """Stop the heartbeat of every run this process has open (tests; a process that is going away)."""
    with _LIVE_GUARD:
        live = list(_LIVE.values())
        _LIVE.clear()
    for run in live:
        if run._heartbeat is not None:
            run._heartbeat.stop()


def heartbeat_interval() -> float:
    """Seconds between heartbeats: RUN_HEARTBEAT_SECONDS, at most a third of RUN_STALE_SECONDS."""
    settings = get_settings()
    return max(0.1, min(float(settings.run_heartbeat_seconds), settings.run_stale_seconds / 3))


_LIVE: dict[int, Run] = {}  # the runs this process has open: a lock owned by this pid but not here is stale
_LIVE_GUARD = threading.Lock()


def _clean_text(value: str | None, limit: int = 2000) -> str | None:
    """Text any database stores: no NUL (PostgreSQL refuses it), bounded length."""
    if value is None:
        return None
    value = value.replace("\x00", "\\0")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def failure_reason(exc: BaseException) -> str:
    """One line saying why a run ended early."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (KeyboardInterrupt)"
    if isinstance(exc, HubError | Terminated):
        return str(exc) or type(exc).__name__
    text_ = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text_}" if text_ else type(exc).__name__


@dataclass
class Run:
    """A job run. Dry runs have no id and write nothing; progress still reaches the callback.

    A real run is closed exactly once (finish, fail or stop); `job_run` makes sure it is, on every path.
    `stats` is what the run records, also when it fails: keep it at what was committed.
    """

    engine: Engine
    kind: str
    dry_run: bool
    user: str
    id: int | None = None
    on_progress: ProgressCallback | None = None
    stats: dict = field(default_factory=dict)
    status: str = "running"  # the status this run ended with, as stored ('stale' when marked so meanwhile)
    _last_logged: float = field(default=0.0, repr=False)
    _heartbeat: _Heartbeat | None = field(default=None, repr=False)

    @property
    def log(self):
        """This run's logger: run_id and kind on every line."""
        return job_logger(self.id, self.kind, dry_run=self.dry_run)

    @property
    def closed(self) -> bool:
        return self.status != "running"

    def _begin_heartbeat(self) -> None:
        with _LIVE_GUARD:
            _LIVE[self.id] = self
        self._heartbeat = _Heartbeat(self.engine, self.id, heartbeat_interval())
        self._heartbeat.start()

    def _end_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
        with _LIVE_GUARD:
            _LIVE.pop(self.id, None)

    def progress(self, done: int, total: int, message: str = "") -> None:
        if self.on_progress:
            self.on_progress(done, total, message)
        # one INFO line per step at most every 5 s (and the last one); every call at DEBUG
        now_s = time.monotonic()
        level = logging.INFO if done >= total or now_s - self._last_logged >= PROGRESS_LOG_SECONDS else logging.DEBUG
        if level == logging.INFO:
            self._last_logged = now_s
        self.log.log(level, message or "progress", extra={"step": "progress", "done": done, "total": total})
        if self.id is None:
            return
        now = utcnow()
        with write_transaction(self.engine) as conn:
            conn.execute(
                text(
                    "UPDATE runs SET heartbeat_at = :now, progress_done = :d, progress_total = :t, "
                    "progress_message = :m WHERE id = :id"
                ),
                {"now": now, "d": done, "t": total, "m": _clean_text(message, 500), "id": self.id},
            )
            conn.execute(text("UPDATE run_locks SET heartbeat_at = :now WHERE run_id = :id"), {"now": now, "id": self.id})

    def _close(self, status: str, stats: dict | None, error: str | None) -> str:
        """Record the end (once; later calls change nothing) and release the lock. Returns the stored status."""
        if self.closed:
            return self.status
        if stats is not None:
            self.stats = stats
        error = _clean_text(error)
        if self.id is None:
            self.status = status
            self._log_end(status, error)
            return status
        self._end_heartbeat()
        try:
            self.status = self._store_end(status, error)
        except Exception as exc:
            self.status = self._release_after_failed_close(status, error, exc)
            raise
        self._log_end(status, error)
        return self.status

    def _log_end(self, status: str, error: str | None) -> None:
        self.log.log(logging.INFO if status == "succeeded" else logging.WARNING, f"run {status}",
                     extra={"step": "finish", "status": status, "error": error, "stats": self.stats})

    def _store_end(self, status: str, error: str | None) -> str:
        with write_transaction(self.engine) as conn:
            if status == "failed":  # what is in the database is what counts: the failed transaction rolled back
                committed = conn.execute(text("SELECT count(*) FROM changes WHERE run_id = :id"),
                                         {"id": self.id}).scalar_one()
                self.stats = {**self.stats, "changes_committed": int(committed)}
            closed = conn.execute(
                text("UPDATE runs SET status = :s, finished_at = :now, stats = :stats, error = :e "
                     "WHERE id = :id AND status = 'running'"),
                {"s": status, "now": utcnow(), "stats": _json(self.stats), "e": error, "id": self.id},
            ).rowcount
            stored = status
            if not closed:  # marked stale (or otherwise ended) by someone else meanwhile: keep their mark
                row = conn.execute(text("SELECT status, error FROM runs WHERE id = :id"), {"id": self.id}).first()
                stored = row[0] if row else "stale"
                note = _clean_text(f"{(row[1] if row else None) or f'marked {stored}'}; the job was still alive and "
                                   f"ended '{status}' afterwards" + (f": {error}" if error else ""))
                conn.execute(text("UPDATE runs SET stats = :stats, error = :e, "
                                  "finished_at = COALESCE(finished_at, :now) WHERE id = :id"),
                             {"stats": _json(self.stats), "e": note, "now": utcnow(), "id": self.id})
                self.log.warning(f"run ended {status} after it was marked {stored}; its status stays {stored}",
                                 extra={"step": "late-finish", "status": stored})
            conn.execute(text("DELETE FROM run_locks WHERE run_id = :id"), {"id": self.id})
        return stored

    def _release_after_failed_close(self, status: str, error: str | None, exc: Exception) -> str:
        """Closing failed (e.g. the connection was lost): release the lock and mark the run failed, afresh."""
        reason = _clean_text(f"recording the end ({status}) failed: {failure_reason(exc)}"
                             + (f"; {error}" if error else ""))
        self.log.error("closing the run failed; releasing its lock on a fresh connection",
                       extra={"step": "finish", "error": reason})
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(text("DELETE FROM run_locks WHERE run_id = :id"), {"id": self.id})
        except Exception as again:  # noqa: BLE001 - nothing more to do here; the lock goes stale (pid, heartbeat)
            self.log.error("releasing the run lock failed too", extra={"error": failure_reason(again)})
            return "failed"
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(text("UPDATE runs SET status = 'failed', finished_at = :now, error = :e "
                                  "WHERE id = :id AND status = 'running'"),
                             {"now": utcnow(), "e": reason, "id": self.id})
        except Exception as again:  # noqa: BLE001
            self.log.error("marking the run failed failed too", extra={"error": failure_reason(again)})
        return "failed"

    def finish(self, stats: dict | None = None) -> str:
        """Succeeded; returns the stored status ('stale' when the run was marked stale meanwhile)."""
        return self._close("succeeded", stats, None)

    def fail(self, error: str, stats: dict | None = None) -> str:
        return self._close("failed", stats, error)

    def stop(self, reason: str, stats: dict | None = None) -> str:
        """An outside service stopped the run: what was done is kept, the reason is recorded."""
        return self._close("stopped", stats, reason)

    def cancel(self, reason: str, stats: dict | None = None) -> str:
        """A person cancelled the run: the chunks committed before are kept (undo reverts them)."""
        return self._close("cancelled", stats, reason)

    def cancel_requested(self) -> str | None:
        """Who asked this run to cancel, or None; jobs ask between chunks."""
        return cancel_requested(self.engine, self.id) if self.id is not None else None


def _insert_run(conn: Connection, kind: str, user: str, parameters: dict, undoes: int | None = None,
                dry_run: bool = False) -> int:
    now = utcnow()
    return conn.execute(
        text(
            "INSERT INTO runs (kind, status, dry_run, triggered_by, started_at, heartbeat_at, parameters, undoes_run_id) "
            "VALUES (:k, 'running', :dry, :u, :now, :now, :p, :undoes) RETURNING id"
        ),
        {"k": kind, "u": user, "now": now, "p": _json(parameters), "undoes": undoes, "dry": dry_run},
    ).scalar_one()


def record_preview(engine: Engine, kind: str, *, user: str, parameters: dict | None = None) -> Run:
    """A dry run that is recorded (no lock: previews write nothing), so its progress can be watched from anywhere."""
    with write_transaction(engine) as conn:
        run_id = _insert_run(conn, kind, user, parameters or {}, dry_run=True)
    run = Run(engine, kind, True, user, run_id)
    run.log.info("preview started", extra={"step": "start", "user": user})
    return run


def _zombie(pid: int) -> bool:
    """A process that ended but was not reaped (a detached worker whose init does not reap) still answers kill 0."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def lock_is_stale(lock: dict, stale_after: timedelta) -> str | None:
    """Why the holder of `lock` is dead, or None while it is alive.

    On this host the process decides: gone → stale at once; alive → alive (its heartbeat may wait behind a
    long SQLite write, so age alone does not tell). A lock owned by this very process but not open in it is
    left from an earlier process with the same pid (a restarted container). On another host only the
    heartbeat tells: older than RUN_STALE_SECONDS → stale.
    """
    host, _, pid = str(lock["owner"]).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            with _LIVE_GUARD:
                alive = lock.get("run_id", lock.get("id")) in _LIVE
            return None if alive else f"this process ({lock['owner']}) no longer runs it"
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return f"process {lock['owner']} is gone"
        except PermissionError:
            pass
        if _zombie(int(pid)):
            return f"process {lock['owner']} is gone (exited, not yet reaped)"
        return None
    heartbeat = as_datetime(lock["heartbeat_at"])
    if heartbeat is not None and utcnow() - heartbeat > stale_after:
        return f"no heartbeat since {heartbeat:%Y-%m-%d %H:%M:%S} UTC"
    return None


def start_run(engine: Engine, kind: str, *, user: str, dry_run: bool = False, parameters: dict | None = None,
              on_progress: ProgressCallback | None = None, undoes: int | None = None) -> Run:
    """Start a run of `kind`. Raises RunBusy while another run of that kind is alive (any process).

    Prefer `job_run`, which closes the run on every path; a run from here must be closed by the caller.
    """
    if dry_run:
        run = Run(engine, kind, True, user, None, on_progress)
        run.log.info("run started", extra={"step": "start", "user": user})
        return run
    parameters = parameters or {}
    stale_after = timedelta(seconds=get_settings().run_stale_seconds)
    for _attempt in range(3):
        try:
            with write_transaction(engine) as conn:
                run_id = _insert_run(conn, kind, user, parameters, undoes)
                conn.execute(
                    text("INSERT INTO run_locks (kind, run_id, owner, acquired_at, heartbeat_at) "
                         "VALUES (:k, :r, :o, :now, :now)"),
                    {"k": kind, "r": run_id, "o": _owner(), "now": utcnow()},
                )
            run = Run(engine, kind, False, user, run_id, on_progress)
            run._begin_heartbeat()
            run.log.info("run started", extra={"step": "start", "user": user, "owner": _owner()})
            return run
        except IntegrityError:
            pass
        with write_transaction(engine) as conn:
            lock = conn.execute(
                text("SELECT l.run_id, l.owner, l.heartbeat_at, r.triggered_by, r.started_at FROM run_locks l "
                     "JOIN runs r ON r.id = l.run_id WHERE l.kind = :k"),
                {"k": kind},
            ).mappings().first()
            if lock is None:
                continue  # released meanwhile: try again
            why_stale = lock_is_stale(dict(lock), stale_after)
            lock = {**lock, "started_at": as_datetime(lock["started_at"])}
            if why_stale is None:
                # DEBUG only: the command's one error line already says it (exit 2 = one line on stderr)
                job_logger(lock["run_id"], kind).debug("run refused: already running",
                                                       extra={"step": "refused", "user": user})
                raise RunBusy(
                    f"{_article(kind)} {kind} run is already running (run {lock['run_id']}, started {lock['started_at']:%Y-%m-%d %H:%M} "
                    f"UTC by {lock['triggered_by']}); try again when it has finished"
                    if isinstance(lock["started_at"], datetime)
                    else f"{_article(kind)} {kind} run is already running (run {lock['run_id']} by {lock['triggered_by']})"
                )
            job_logger(lock["run_id"], kind).warning("run marked stale", extra={"step": "stale", "reason": why_stale})
            conn.execute(
                text("UPDATE runs SET status = 'stale', finished_at = :now, error = :e WHERE id = :id AND status = 'running'"),
                {"now": utcnow(), "e": f"marked stale: {why_stale}", "id": lock["run_id"]},
            )
            conn.execute(text("DELETE FROM run_locks WHERE kind = :k AND run_id = :r"), {"k": kind, "r": lock["run_id"]})
    raise RunBusy(f"could not take the {kind} run lock; try again")


@contextmanager
def job_run(engine: Engine, kind: str, *, user: str, dry_run: bool, parameters: dict | None = None,
            on_progress: ProgressCallback | None = None, undoes: int | None = None) -> Iterator[Run]:
    """The one way to run a job or an edit: the run always closes and its lock is always released.

    Finished on success (unless the body closed it), stopped on ServiceError, failed with the reason on
    anything else (database errors, ValueError, KeyboardInterrupt, SIGTERM turned into an exception).
    """
    run = start_run(engine, kind, user=user, dry_run=dry_run, parameters=parameters, on_progress=on_progress,
                    undoes=undoes)
    try:
        yield run
    except ServiceError as exc:
        _close_quietly(run.stop, str(exc))
        raise
    except RunCancelled as exc:
        _close_quietly(run.cancel, str(exc))
        raise
    except BaseException as exc:
        _close_quietly(run.fail, failure_reason(exc))
        raise
    else:
        run.finish()  # no-op when the body closed it


def _close_quietly(close: Callable[[str], str], reason: str) -> None:
    """Close after the body failed; a failure to record it (logged, lock released) must not hide the first."""
    try:
        close(reason)
    except Exception:  # noqa: BLE001, S110 - already logged by Run._release_after_failed_close
        pass


def _decode_run(row: dict) -> dict:
    out = dict(row)
    out["run_id"] = out.pop("id")
    out["dry_run"] = bool(out["dry_run"])
    for key in ("started_at", "finished_at", "heartbeat_at", "cancel_requested_at"):
        if key in out:
            out[key] = as_datetime(out[key])
    for key in ("stats", "parameters"):
        if key in out:
            try:
                out[key] = json.loads(out[key] or "{}")
            except ValueError:
                out[key] = {}
    return out


RUN_COLUMNS = ("id, kind, status, dry_run, triggered_by, started_at, finished_at, heartbeat_at, progress_done, "
               "progress_total, progress_message, stats, error, parameters, undone_by_run_id, undoes_run_id, "
               "cancel_requested_at, cancel_requested_by, worker")


def list_runs(engine: Engine, *, limit: int = 200, kind: str | None = None, user: str | None = None) -> list[dict]:
    where, params = [], {"limit": limit}
    if kind:
        where.append("kind = :kind")
        params["kind"] = kind
    if user:
        where.append("triggered_by = :user")
        params["user"] = user
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    with engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {RUN_COLUMNS} FROM runs {clause} ORDER BY id DESC LIMIT :limit"), params
        ).mappings().all()
    return [_decode_run(dict(r)) for r in rows]


def request_cancel(engine: Engine, run_id: int, *, user: str, role: str, needed: str = "operator") -> dict:
    """Ask a running run to stop at its next chunk (any process, any replica); returns the run."""
    require_role(role, needed, f"cancel run {run_id}")
    with write_transaction(engine) as conn:
        changed = conn.execute(
            text("UPDATE runs SET cancel_requested_at = :now, cancel_requested_by = :u "
                 "WHERE id = :id AND status = 'running' AND cancel_requested_at IS NULL"),
            {"now": utcnow(), "u": user, "id": run_id},
        ).rowcount
    run = get_run(engine, run_id)
    if not changed and run["status"] != "running":
        raise InputError(f"run {run_id} is not running (status {run['status']}); nothing to cancel")
    return run


def cancel_requested(engine: Engine, run_id: int) -> str | None:
    """Who asked `run_id` to cancel, or None."""
    with engine.connect() as conn:
        return conn.execute(
            text("SELECT cancel_requested_by FROM runs WHERE id = :id AND cancel_requested_at IS NOT NULL"),
            {"id": run_id},
        ).scalar()


def adopt_run(engine: Engine, run_id: int) -> Run:
    """The worker process takes over a run the page recorded: the lock and the run name this process."""
    run = get_run(engine, run_id)
    with write_transaction(engine) as conn:
        conn.execute(text("UPDATE runs SET worker = :o, heartbeat_at = :now WHERE id = :id"),
                     {"o": _owner(), "now": utcnow(), "id": run_id})
        conn.execute(text("UPDATE run_locks SET owner = :o, heartbeat_at = :now WHERE run_id = :id"),
                     {"o": _owner(), "now": utcnow(), "id": run_id})
    adopted = Run(engine, run["kind"], run["dry_run"], run["triggered_by"], run_id)
    adopted._begin_heartbeat()
    return adopted


def hand_over(run: Run) -> None:
    """The process that recorded `run` stops keeping it alive: its worker adopts it (and beats) from now on."""
    run._end_heartbeat()


def run_kinds(engine: Engine) -> list[str]:
    """Every kind that has a run, for the Runs page's filter."""
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT DISTINCT kind FROM runs ORDER BY kind")).scalars())


def run_change_count(engine: Engine, run_id: int) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM changes WHERE run_id = :r"), {"r": run_id}).scalar_one())


def run_users(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT DISTINCT triggered_by FROM runs ORDER BY triggered_by")).scalars())


def get_run(engine: Engine, run_id: int) -> dict:
    with engine.connect() as conn:
        row = conn.execute(text(f"SELECT {RUN_COLUMNS} FROM runs WHERE id = :id"), {"id": run_id}).mappings().first()
    if row is None:
        raise InputError(f"there is no run with id {run_id}")
    return _decode_run(dict(row))


def run_changes(engine: Engine, run_id: int, limit: int | None = None, offset: int = 0) -> list[dict]:
    sql = ("SELECT id, table_name, row_id, action, field, old_value, new_value, changed_by, at FROM changes "
           "WHERE run_id = :r ORDER BY id")
    if limit:
        sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {"r": run_id}).mappings().all()
    return [{**r, "at": as_datetime(r["at"]), "old_value": decode_value(r["old_value"]),
             "new_value": decode_value(r["new_value"])} for r in rows]


def row_history(engine: Engine, table: str, row_id: int) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT c.id, c.run_id, r.kind, c.action, c.field, c.old_value, c.new_value, c.changed_by, c.at "
                 "FROM changes c LEFT JOIN runs r ON r.id = c.run_id "
                 "WHERE c.table_name = :t AND c.row_id = :id ORDER BY c.id DESC"),
            {"t": table, "id": row_id},
        ).mappings().all()
    return [{**r, "at": as_datetime(r["at"]), "old_value": decode_value(r["old_value"]),
             "new_value": decode_value(r["new_value"])} for r in rows]


def later_changes(engine: Engine, run_id: int) -> list[dict]:
    """Changes by anyone else, after this run, to a field this run changed."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT c2.table_name, c2.row_id, c2.field, c2.run_id, c2.changed_by, c2.at, c2.new_value "
                "FROM changes c2 JOIN (SELECT table_name, row_id, field, MAX(id) AS last_id FROM changes "
                "WHERE run_id = :r GROUP BY table_name, row_id, field) mine "
                "ON c2.table_name = mine.table_name AND c2.row_id = mine.row_id "
                "AND (c2.field = mine.field OR mine.field = '*' OR c2.field = '*') "
                "AND (c2.run_id IS NULL OR c2.run_id <> :r) "
                "AND c2.id > mine.last_id ORDER BY c2.id"
            ),
            {"r": run_id},
        ).mappings().all()
    return [{**r, "new_value": decode_value(r["new_value"])} for r in rows]


@dataclass(slots=True)
class _RowEffect:
    """What one run did to one row: the values before it and the values it left (by field)."""

    table: str
    row_id: int
    inserted: bool = False  # the row did not exist before the run
    deleted: bool = False  # the run left the row deleted
    before: dict = field(default_factory=dict)  # field → value before the run (first change wins)
    written: dict = field(default_factory=dict)  # field → value the run left (last change wins)
    unread_insert: int | None = None  # the insert change whose values `written` still lacks (`_read_inserts`)
    written_before_insert: dict | None = None  # what `written` held when that insert came (in a consistent log: {})


def _read_effects(conn: Connection, run_id: int) -> tuple[list[_RowEffect], int]:
    """The run's changes folded per row, in the order the run first touched each row, and how many there were.

    An insert's values are left unread (`unread_insert`): undo needs them only for a row changed since, and a
    large import's undo would otherwise decode a whole-row JSON per created row.
    """
    rows: dict[tuple[str, int], _RowEffect] = {}
    changes = conn.execute(
        text("SELECT id, table_name, row_id, action, field, old_value, "
             "CASE WHEN action = 'insert' THEN NULL ELSE new_value END FROM changes WHERE run_id = :r ORDER BY id"),
        {"r": run_id},
    ).all()
    olds, news = _decode_all([c[5] for c in changes]), _decode_all([c[6] for c in changes])
    for (change_id, table_name, row_id, action, name, _, _), old, new in zip(changes, olds, news, strict=True):
        effect = rows.get((table_name, row_id))
        if effect is None:
            effect = rows[(table_name, row_id)] = _RowEffect(table_name, row_id, inserted=action == "insert")
        if action == "insert":
            effect.deleted = False
            effect.written_before_insert, effect.written = effect.written, {}
            effect.unread_insert = change_id
        elif action == "delete":
            effect.deleted = True
            for key, value in (old or {}).items():
                if key in AUDITED_TABLES[effect.table]:
                    effect.before.setdefault(key, value)
            effect.written = {}
            effect.unread_insert = None
        else:
            effect.before.setdefault(name, old)
            effect.written[name] = new
    return list(rows.values()), len(changes)


def _decode_all(raw: list[str | None]) -> list[Any]:
    """decode_value of each, in one json.loads (a call per value costs more than the decoding itself)."""
    values = json.loads("[" + ",".join("null" if r is None else r for r in raw) + "]")
    if len(values) != len(raw):  # a stored text that is not one JSON value: decode each, so it is named
        values = [decode_value(r) for r in raw]
    return values


def _read_inserts(conn: Connection, effects: list[_RowEffect]) -> None:
    """Fill in `written` from the insert changes `_read_effects` left unread (later changes of the run win)."""
    unread = {e.unread_insert: e for e in effects if e.unread_insert is not None}
    ids = list(unread)
    for start in range(0, len(ids), 1000):
        query = text("SELECT id, new_value FROM changes WHERE id IN :ids").bindparams(bindparam("ids", expanding=True))
        for change_id, value in conn.execute(query, {"ids": ids[start:start + 1000]}):
            effect = unread[change_id]
            effect.written = {**(effect.written_before_insert or {}), **(decode_value(value) or {}), **effect.written}
            effect.unread_insert = effect.written_before_insert = None


@lru_cache(maxsize=256)
def _python_type(table: str, name: str) -> type | None:
    """The column's Python type, or None for an audited table without typed metadata (compared as text)."""
    try:
        return _table(table).c[name].type.python_type
    except NotImplementedError:
        return None


def _canon(table: str, name: str, value: Any) -> Any:
    """A value as its column holds it, so a JSON-logged value and a stored one compare by value."""
    if value is None:
        return None
    python_type = _python_type(table, name)
    if python_type is None or python_type is str:
        return str(value)
    try:
        if python_type is bool:
            return bool(value)
        if python_type is int:
            return int(value)
        if python_type is Decimal:
            return Decimal(str(value))
        if python_type is date:
            return value.isoformat()[:10] if isinstance(value, date) else str(value)[:10]
    except (ValueError, ArithmeticError):
        pass
    return str(value)


def _table(name: str):
    """The table's typed metadata (lib/tables.py), or a plain one for other audited tables."""
    known = tables.BY_NAME.get(name)
    return known if known is not None else sa_table(name, column("id"), *(column(c) for c in AUDITED_TABLES[name]))


def _current_rows(conn: Connection, table: str, ids: list[int], lock: bool) -> dict[int, dict]:
    """The rows as stored now, typed; with `lock` they stay locked (PostgreSQL) until the transaction ends."""
    target = _table(table)
    names = ("id", *AUDITED_TABLES[table])
    columns = [target.c[n] for n in names]
    out: dict[int, dict] = {}
    for start in range(0, len(ids), 1000):
        query = select(*columns).where(target.c.id.in_(ids[start : start + 1000]))
        if lock and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        out.update({r[0]: dict(zip(names, r, strict=True)) for r in conn.execute(query)})
    return out


def _undo_conflicts(conn: Connection, run_id: int, effects: list[_RowEffect], *, lock: bool) -> list[dict]:
    """Every field whose value now differs from what the run left (a later change still in effect).

    A later change that was undone, or that wrote the same value, leaves the field as the run left it: no
    conflict. Fields of a row the run inserted that the run did not set count from the first later change.
    """
    last_id = conn.execute(text("SELECT max(id) FROM changes WHERE run_id = :r"), {"r": run_id}).scalar()
    later: dict[tuple[str, int, str], dict] = {}  # first later old value and the last later author, per field
    if last_id is not None:
        rows = conn.execute(
            text("SELECT c.table_name, c.row_id, c.action, c.field, c.old_value, c.run_id, c.changed_by FROM changes c "
                 "WHERE c.id > :last AND EXISTS (SELECT 1 FROM changes m WHERE m.run_id = :r "
                 "AND m.table_name = c.table_name AND m.row_id = c.row_id) ORDER BY c.id"),
            {"last": last_id, "r": run_id},
        ).mappings()
        for c in rows:
            names = [c["field"]] if c["field"] != WHOLE_ROW else list(AUDITED_TABLES[c["table_name"]])
            old = decode_value(c["old_value"])
            for name in names:
                key = (c["table_name"], c["row_id"], name)
                value = old.get(name) if c["field"] == WHOLE_ROW and isinstance(old, dict) else old
                entry = later.setdefault(key, {"first_old": value})
                entry.update(run_id=c["run_id"], changed_by=c["changed_by"])
    # A row the run inserted and nobody touched since holds what the run wrote: every write to an audited
    # table is logged, so such a row needs no read (a 100k-row import's undo reads only the few touched rows).
    touched = {(t, r) for t, r, _ in later}
    effects = [e for e in effects if not (e.inserted and not e.deleted and (e.table, e.row_id) not in touched)]
    _read_inserts(conn, effects)
    by_table: dict[str, list[int]] = {}
    for e in effects:
        by_table.setdefault(e.table, []).append(e.row_id)
    current = {t: _current_rows(conn, t, ids, lock) for t, ids in by_table.items()}
    conflicts: list[dict] = []

    def conflict(e: _RowEffect, name: str, now: Any, run_value: Any, why: str) -> None:
        who = later.get((e.table, e.row_id, name)) or later.get((e.table, e.row_id, WHOLE_ROW)) or {}
        conflicts.append({"table_name": e.table, "row_id": e.row_id, "field": name, "current": now,
                          "run_value": run_value, "reason": why, "run_id": who.get("run_id"),
                          "changed_by": who.get("changed_by")})

    for e in effects:
        row = current[e.table].get(e.row_id)
        if e.deleted:
            if row is not None:
                conflict(e, WHOLE_ROW, "present", "deleted", "the run deleted this row; it exists again")
            continue
        if row is None:
            if not e.inserted:
                conflict(e, WHOLE_ROW, "deleted", "present", "the row was deleted since")
            continue  # an inserted row deleted since: already as before the run
        names = AUDITED_TABLES[e.table] if e.inserted else tuple(e.written)
        for name in names:
            if name in e.written:
                expected = e.written[name]
            elif (e.table, e.row_id, name) in later:
                expected = later[(e.table, e.row_id, name)]["first_old"]
            else:
                continue  # nobody changed it since the run inserted the row
            stored = row[name]
            if stored.__class__ is expected.__class__ and stored == expected:
                continue  # the same value as it stands (most fields of a large run): no need to canonicalise
            if _canon(e.table, name, stored) != _canon(e.table, name, expected):
                conflict(e, name, stored, expected, "changed since")
    return conflicts


def undo_conflicts(engine: Engine, run_id: int) -> list[dict]:
    """What undoing `run_id` now would overwrite: fields that no longer hold the value the run left."""
    with engine.connect() as conn:
        effects = _read_effects(conn, run_id)[0]
        _module_tables(conn, run_id, effects)
        return _undo_conflicts(conn, run_id, effects, lock=False)


def _module_of_run(conn: Connection, run_id: int) -> str | None:
    """The module whose job `run_id` is (kind MODULE.JOB), following undo runs back to the run first undone."""
    kind, undoes = conn.execute(text("SELECT kind, undoes_run_id FROM runs WHERE id = :r"), {"r": run_id}).one()
    while kind == "undo" and undoes is not None:
        kind, undoes = conn.execute(text("SELECT kind, undoes_run_id FROM runs WHERE id = :r"), {"r": undoes}).one()
    return kind.split(".", 1)[0] if "." in kind else None


def _module_tables(conn: Connection, run_id: int, effects: list[_RowEffect]) -> None:
    """Entries of a module's run (lib.modules.audited_update) name its own tables: read their columns so undo
    handles them; refuse an entry outside the module's prefix (a core job's run names only core tables)."""
    named = {e.table for e in effects}
    if named <= CORE_AUDITED and "." not in _kind_of(conn, run_id):
        return
    from lib.modules import module_prefix

    module = _module_of_run(conn, run_id)
    prefix = module_prefix(module) if module else None
    foreign = sorted(t for t in named if prefix is None or not t.startswith(prefix) or t in CORE_AUDITED)
    if foreign:
        owner = f"module {module}'s job, whose tables are named {prefix}…" if module else "a core job"
        raise UndoRefused(f"run {run_id} cannot be undone: it is {owner}, but its audit entries name "
                          f"{', '.join(foreign)}; nothing was changed")
    for table in named:
        try:
            audit_module_table(conn, table)
        except LookupError:
            raise UndoRefused(f"run {run_id} cannot be undone: its table {table} no longer exists") from None


def _kind_of(conn: Connection, run_id: int) -> str:
    return conn.execute(text("SELECT kind FROM runs WHERE id = :r"), {"r": run_id}).scalar_one()


def _refusal(run_id: int, conflicts: list[dict]) -> UndoRefused:
    fields = sorted({f"{c['table_name']}#{c['row_id']}.{c['field']}" for c in conflicts})
    return UndoRefused(
        f"run {run_id} cannot be undone: {len(fields)} of its fields no longer hold the value it wrote "
        f"(later changes still in effect): {', '.join(fields[:20])}{' …' if len(fields) > 20 else ''} "
        "(use --force to overwrite them)",
        conflicts,
    )


def undo_run(engine: Engine, run_id: int, *, user: str, force: bool = False, role: str = "admin") -> dict:
    """Restore every field `run_id` changed, as a new run of kind 'undo'. Returns its summary.

    Judged by values: a field that still holds what the run wrote is restored, whoever touched it since;
    one that holds something else is a conflict (refused unless `force`). The check and the writes are one
    write transaction. An undo run can itself be undone (redo). Operators may undo their own runs;
    undoing someone else's run needs the admin role.
    """
    require_role(role, "operator", "undo runs")
    target = get_run(engine, run_id)
    if target["triggered_by"] != user:
        require_role(role, "admin", f"undo run {run_id}, which {target['triggered_by']} started")
    if target["dry_run"]:
        raise UndoRefused(f"run {run_id} was a dry run and changed nothing")
    if target["status"] == "running":
        raise UndoRefused(f"run {run_id} is still running")
    with engine.connect() as conn:
        effects, change_count = _read_effects(conn, run_id)
        _module_tables(conn, run_id, effects)
    _refuse_if_undone(target)
    if not force:  # a refusal without recording a run; the transaction below decides for real
        with engine.connect() as conn:
            conflicts = _undo_conflicts(conn, run_id, effects, lock=False)
        if conflicts:
            raise _refusal(run_id, conflicts)
    stats = {"undone_run_id": run_id, "fields_restored": 0, "rows_deleted": 0, "rows_restored": 0,
             "changes_in_run": change_count, "overwrote_later_changes": 0}
    with job_run(engine, "undo", user=user, dry_run=False, parameters={"run_id": run_id, "force": force},
                 undoes=run_id) as undo:
        with write_transaction(engine) as conn:
            query = "SELECT id, undone_by_run_id, undoes_run_id FROM runs WHERE id = :r"
            if conn.dialect.name == "postgresql":
                query += " FOR UPDATE"  # two undos of one run: the second waits, then sees the first
            now = conn.execute(text(query), {"r": run_id}).mappings().one()
            _refuse_if_undone({"run_id": run_id, **now})
            conflicts = _undo_conflicts(conn, run_id, effects, lock=True)
            if conflicts and not force:
                raise _refusal(run_id, conflicts)
            stats["overwrote_later_changes"] = len(conflicts)
            try:
                clashes = _revert(conn, effects, undo.id, user, stats)
            except Exception as exc:
                raise HubError(f"undo of run {run_id} failed, nothing was changed: {failure_reason(exc)}") from exc
            if clashes:  # the transaction rolls back: nothing was changed
                rows = ", ".join(f"{c['table_name']}#{c['row_id']}" for c in clashes[:20])
                raise UndoRefused(
                    f"run {run_id} cannot be undone: {len(clashes)} row(s) it removed cannot be put back because "
                    f"another row now holds the same unique value: "
                    f"{rows} ({clashes[0]['reason']})",
                    clashes)
            _link_undo(conn, run_id, undo.id, now["undoes_run_id"])
        undo.finish(stats)
    return {"run_id": undo.id, "undone_run_id": run_id, **stats}


def _refuse_if_undone(run: dict) -> None:
    if run["undone_by_run_id"]:
        raise UndoRefused(f"run {run['run_id']} was already undone by run {run['undone_by_run_id']}; nothing to do "
                          f"(undo run {run['undone_by_run_id']} to redo it)")


def _link_undo(conn: Connection, run_id: int, undo_id: int, undid: int | None) -> None:
    """`undone_by_run_id` names the run whose effect is in force over a run: set it, and when the undone run
    was itself an undo (a redo), its target is in force again and the target's target undone again."""
    conn.execute(text("UPDATE runs SET undone_by_run_id = :u WHERE id = :r"), {"u": undo_id, "r": run_id})
    if undid is None:
        return
    conn.execute(text("UPDATE runs SET undone_by_run_id = NULL WHERE id = :r"), {"r": undid})
    before = conn.execute(text("SELECT undoes_run_id FROM runs WHERE id = :r"), {"r": undid}).scalar()
    if before is not None:
        conn.execute(text("UPDATE runs SET undone_by_run_id = :u WHERE id = :r"), {"u": undid, "r": before})


def _revert(conn: Connection, effects: list[_RowEffect], undo_id: int, user: str, stats: dict) -> list[dict]:
    """Put every row back as it was before the run, in the reverse order of the run (children the run inserted
    after their parents first; a unique value one row took from another given back before the other takes it).

    Consecutive rows of one table that the run inserted (deleted now) or changed (fields restored) go as one
    set. Returns the rows that could not be put back because the database refused them (a unique value now
    held by another row, e.g. the same subscription imported again since): the caller refuses the undo.
    """
    clashes: list[dict] = []
    pending: tuple[str, str, list[_RowEffect]] = ("", "", [])  # (what to do, table, rows) not yet written

    def flush() -> None:
        what, table, batch = pending
        if what == "delete":
            stats["rows_deleted"] += delete_rows(conn, table, [e.row_id for e in batch], run_id=undo_id, user=user)
        elif what == "restore":
            stats["fields_restored"] += restore_rows(conn, table, [(e.row_id, e.before) for e in batch],
                                                     run_id=undo_id, user=user)
        batch.clear()

    for e in reversed(effects):
        if e.inserted or not e.deleted:  # an inserted row the run deleted again is absent: deleting skips it
            what = "delete" if e.inserted else "restore"
            if (what, e.table) != pending[:2]:
                flush()
                pending = (what, e.table, [])
            pending[2].append(e)
            continue
        flush()
        exists = conn.execute(text(f"SELECT 1 FROM {e.table} WHERE id = :id"), {"id": e.row_id}).first() is not None
        if not exists:
            try:
                with conn.begin_nested():
                    _reinsert(conn, e.table, e.row_id, dict(e.before), undo_id, user)
            except IntegrityError as exc:
                reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else "unique value taken"
                clashes.append({"table_name": e.table, "row_id": e.row_id, "field": WHOLE_ROW, "current": None,
                                "run_value": None, "reason": reason, "run_id": None, "changed_by": None})
                continue
            stats["rows_restored"] += 1
            continue
        written = update_row(conn, e.table, e.row_id, e.before, run_id=undo_id, user=user)  # there again (forced)
        stats["fields_restored"] += len(written)
    flush()
    return clashes


def _reinsert(conn: Connection, table: str, row_id: int, values: dict, undo_id: int, user: str) -> None:
    values = {k: v for k, v in values.items() if k in AUDITED_TABLES[table]}
    now = utcnow()
    cols = ["id", *values.keys(), "created_at", "updated_at"]
    conn.execute(
        text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"),
        {"id": row_id, **values, "created_at": now, "updated_at": now},
    )
    log_change(conn, undo_id, table, row_id, "insert", WHOLE_ROW, None, values, user, now)
