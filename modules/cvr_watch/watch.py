"""cvr_watch: compare the CVR register with the Hub's customers, keep snapshots and alerts, act on alerts.

Every query of the module's own tables (and of `customers`, which module.json declares in "reads") runs on
`module_connection`, confined by the database. Hub customers change only through lib.customers.update_customer,
the audited path, so taking the register's name or address is one run that `undo` reverts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.config import get_settings
from lib.cvr import InvalidCVR
from lib.cvr_cache import CvrCache, query_key
from lib.cvr_client import CvrClient, CvrCompany
from lib.cvr_lookup import _mark_quota_exhausted, config_problem, quota_status
from lib.errors import InputError, ServiceError, ServiceQuotaError
from lib.http_session import make_session
from lib.modules import get_module_config, module_connection
from lib.roles import Actor, require_role

MODULE = "cvr_watch"
KINDS = ("ceased", "bankruptcy", "name", "address", "not_found")
ALERT_SETTING = {"ceased": "ALERT_CEASED", "bankruptcy": "ALERT_BANKRUPTCY", "name": "ALERT_NAME",
                 "address": "ALERT_ADDRESS", "not_found": "ALERT_CEASED"}
TAKEABLE = ("name", "address")


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def setting(key: str) -> Any:
    """The module's setting in effect now (environment, then the Modules page, then module.json)."""
    return get_module_config(MODULE, key)


@dataclass(frozen=True)
class Register:
    """What the register says about one CVR number now."""

    found: bool
    name: str | None = None
    address: str | None = None
    zipcode: str | None = None
    city: str | None = None
    end_date: str | None = None
    bankrupt: bool = False
    credit_status: str | None = None

    @classmethod
    def of(cls, company: CvrCompany | None) -> Register:
        if company is None:
            return cls(False)
        raw = company.raw or {}
        status = raw.get("creditstatus")
        return cls(True, company.name, company.address, company.zipcode, company.city,
                   company.end_date.isoformat() if company.end_date else None, bool(raw.get("creditbankrupt")),
                   str(status) if status not in (None, "") else None)


def _same(a: str | None, b: str | None) -> bool:
    return " ".join((a or "").casefold().split()) == " ".join((b or "").casefold().split())


def address_text(parts: list | tuple) -> str:
    address, zipcode, city = parts
    return ", ".join(p for p in (address, " ".join(x for x in (zipcode, city) if x)) if p)


def changes_of(customer: dict, reg: Register) -> list[tuple[str, str | None, str]]:
    """(kind, old value, new value) for every way the register differs from the Hub's customer."""
    if not reg.found:
        return [("not_found", customer["cvr_number"], "not in the CVR register")]
    out: list[tuple[str, str | None, str]] = []
    if reg.end_date:
        out.append(("ceased", None, f"ceased {reg.end_date}"))
    if reg.bankrupt or reg.credit_status:
        out.append(("bankruptcy", None, reg.credit_status or "bankrupt"))
    if reg.name and not _same(reg.name, customer["name"]):
        out.append(("name", customer["name"], reg.name))
    hub = (customer["address"], customer["zip"], customer["city"])
    new = (reg.address, reg.zipcode, reg.city)
    if reg.address and not all(_same(a, b) for a, b in zip(hub, new, strict=True)):
        out.append(("address", json.dumps(list(hub), ensure_ascii=False), json.dumps(list(new), ensure_ascii=False)))
    return out


def wanted(kinds: list[tuple[str, str | None, str]]) -> list[tuple[str, str | None, str]]:
    return [k for k in kinds if setting(ALERT_SETTING[k[0]]) is not False]


# ------------------------------------------------------------------------------------------------ planning

@dataclass
class Check:
    """One customer looked up in the register: what it says now, and the alerts that follow."""

    key: str
    customer_id: int
    cvr: str
    name: str
    register: Register
    alerts: list[tuple[str, str | None, str]]
    from_cache: bool


@dataclass
class Planned:
    checks: list[Check] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    stopped: str | None = None
    due: int = 0
    fresh: int = 0
    lookups: int = 0
    left: int = 0


def due_customers(engine: Engine, recheck_days: int) -> tuple[list[dict], int]:
    """Customers with a CVR number, never checked first, then the longest unchecked; and how many are fresh."""
    cutoff = now() - timedelta(days=recheck_days)
    with module_connection(MODULE, engine) as conn:
        rows = conn.execute(text(
            "SELECT c.id, c.name, c.cvr_number, c.address, c.zip, c.city, s.checked_at "
            "FROM customers c LEFT JOIN cvr_watch_snapshots s ON s.customer_id = c.id "
            "WHERE c.cvr_number IS NOT NULL AND c.cvr_number <> '' "
            "ORDER BY CASE WHEN s.checked_at IS NULL THEN 0 ELSE 1 END, s.checked_at, c.id"
        )).mappings().all()
    due, fresh = [], 0
    for r in rows:
        checked = r["checked_at"]
        if isinstance(checked, str):
            checked = datetime.fromisoformat(checked)
        if checked is not None and checked >= cutoff:
            fresh += 1
        else:
            due.append(dict(r))
    return due, fresh


def make_client(engine: Engine, recheck_days: int) -> CvrClient:
    """cvrapi.dk through the Hub's shared cache (answers younger than RECHECK_DAYS cost nothing); no retries."""
    problem = config_problem()
    if problem:
        raise InputError(problem)
    s = get_settings()
    return CvrClient(s.cvr_api_url, s.cvr_user_agent, s.cvr_api_token, cache=CvrCache(engine, recheck_days),
                     timeout=s.http_timeout_seconds, session=make_session(timeout=s.http_timeout_seconds, retries=0))


def plan_checks(engine: Engine, client: CvrClient, *, progress=None, cancelled=None) -> Planned:
    """Look up the due customers until LOOKUPS_PER_RUN requests are spent or the daily quota is used up.

    Writes nothing. A stop leaves the rest due: the next run starts with them (never checked, then oldest).
    """
    budget = int(setting("LOOKUPS_PER_RUN"))
    due, fresh = due_customers(engine, int(setting("RECHECK_DAYS")))
    out = Planned(due=len(due), fresh=fresh)
    quota = quota_status(engine)
    for number, customer in enumerate(due):
        if cancelled is not None and cancelled():
            out.left = len(due) - number
            break
        cvr = str(customer["cvr_number"]).strip()
        cached = client.cache is not None and client.cache.get(query_key("vat", cvr)) is not None
        if not cached:
            if client.requests_made >= budget:
                out.left = len(due) - number
                break
            if quota.exhausted_today or (quota.left is not None and quota.used_today + client.requests_made
                                         >= quota.limit):
                out.left = len(due) - number
                out.stopped = (f"cvrapi.dk's daily quota is used up; {out.left} customer(s) wait for the next run, "
                               "which starts with them")
                break
        try:
            company = client.lookup(cvr)
        except InvalidCVR as exc:
            out.errors.append({"customer_id": customer["id"], "message": f"CVR number {cvr!r}: {exc}"})
            continue
        except ServiceQuotaError as exc:
            _mark_quota_exhausted(client.cache)
            out.left = len(due) - number
            out.stopped = f"{exc}; {out.left} customer(s) wait for the next run, which starts with them"
            break
        except ServiceError as exc:
            out.left = len(due) - number
            out.stopped = f"{exc}; {out.left} customer(s) wait for the next run"
            break
        register = Register.of(company)
        out.checks.append(Check(f"{customer['id']}:{cvr}", customer["id"], cvr, customer["name"], register,
                                wanted(changes_of(customer, register)), cached))
        if progress is not None:
            progress(number + 1, len(due), f"checked {customer['name']}")
    out.lookups = client.requests_made
    return out


# ------------------------------------------------------------------------------------------------ storing

def store_check(conn, check: Check, run_id: int | None) -> int:
    """Keep the snapshot and add the alerts not raised before; returns how many alerts are new."""
    r = check.register
    values = {"c": check.customer_id, "cvr": check.cvr, "found": r.found, "name": r.name, "address": r.address,
              "zip": r.zipcode, "city": r.city, "end": r.end_date, "bankrupt": r.bankrupt,
              "status": r.credit_status, "at": now()}
    conn.execute(text(
        "INSERT INTO cvr_watch_snapshots (customer_id, cvr, found, name, address, zipcode, city, end_date, bankrupt, "
        "credit_status, checked_at) VALUES (:c, :cvr, :found, :name, :address, :zip, :city, :end, :bankrupt, "
        ":status, :at) ON CONFLICT (customer_id) DO UPDATE SET cvr = excluded.cvr, found = excluded.found, "
        "name = excluded.name, address = excluded.address, zipcode = excluded.zipcode, city = excluded.city, "
        "end_date = excluded.end_date, bankrupt = excluded.bankrupt, credit_status = excluded.credit_status, "
        "checked_at = excluded.checked_at"), values)
    new = 0
    for kind, old, new_value in check.alerts:
        new += conn.execute(text(
            "INSERT INTO cvr_watch_alerts (customer_id, cvr, kind, old_value, new_value, found_at, found_by_run_id) "
            "VALUES (:c, :cvr, :k, :old, :new, :at, :run) ON CONFLICT (customer_id, kind, new_value) DO NOTHING"),
            {"c": check.customer_id, "cvr": check.cvr, "k": kind, "old": old, "new": new_value, "at": now(),
             "run": run_id}).rowcount or 0
    return new


# ------------------------------------------------------------------------------------------------ alerts

def list_alerts(engine: Engine, *, include_acknowledged: bool = False) -> list[dict]:
    """Alerts, newest first, with the customer's name and whether the Hub already holds the register's value."""
    where = "" if include_acknowledged else "WHERE a.acknowledged_at IS NULL "
    with module_connection(MODULE, engine) as conn:
        rows = conn.execute(text(
            "SELECT a.id, a.customer_id, a.cvr, a.kind, a.old_value, a.new_value, a.found_at, a.acknowledged_at, "
            "a.acknowledged_by, a.applied_at, a.applied_by, a.applied_run_id, c.name AS customer_name, "
            "c.address AS customer_address, c.zip AS customer_zip, c.city AS customer_city "
            f"FROM cvr_watch_alerts a LEFT JOIN customers c ON c.id = a.customer_id {where}"
            "ORDER BY a.found_at DESC, a.id DESC")).mappings().all()
    out = []
    for r in rows:
        row = dict(r)
        if row["kind"] == "name":
            row["hub_matches"] = _same(row["customer_name"], row["new_value"])
        elif row["kind"] == "address":
            new = json.loads(row["new_value"])
            hub = (row["customer_address"], row["customer_zip"], row["customer_city"])
            row["hub_matches"] = all(_same(a, b) for a, b in zip(hub, new, strict=True))
        else:
            row["hub_matches"] = None
        row["shown_new"] = address_text(json.loads(row["new_value"])) if row["kind"] == "address" else row["new_value"]
        row["shown_old"] = (address_text(json.loads(row["old_value"])) if row["kind"] == "address" and row["old_value"]
                            else row["old_value"])
        out.append(row)
    return out


def _alert(engine: Engine, alert_id: int) -> dict:
    with module_connection(MODULE, engine) as conn:
        row = conn.execute(text("SELECT * FROM cvr_watch_alerts WHERE id = :id"), {"id": alert_id}).mappings().first()
    if row is None:
        raise InputError(f"there is no cvr_watch alert {alert_id}")
    return dict(row)


def acknowledge(engine: Engine, alert_id: int, actor: Actor) -> None:
    """Mark an alert seen (operator); it leaves the open list and is never raised again."""
    require_role(actor.role, "operator", "acknowledge CVR watch alerts")
    _alert(engine, alert_id)
    with module_connection(MODULE, engine) as conn:
        done = conn.execute(text(
            "UPDATE cvr_watch_alerts SET acknowledged_at = :at, acknowledged_by = :by "
            "WHERE id = :id AND acknowledged_at IS NULL"), {"at": now(), "by": actor.email, "id": alert_id}).rowcount
    if not done:
        raise InputError(f"alert {alert_id} is already acknowledged")


def take_register_value(engine: Engine, alert_id: int, actor: Actor) -> dict:
    """Write the register's name or address into the Hub customer through the audited path (one undoable run).

    Refused while READ_ONLY is on; with DRY_RUN on it returns what it would write and writes nothing.
    Returns {"dry_run", "customer_id", "changes", "run_id"}.
    """
    from lib.customers import update_customer
    from lib.runs import row_history

    require_role(actor.role, "operator", "change customers from the CVR register")
    alert = _alert(engine, alert_id)
    if alert["kind"] not in TAKEABLE:
        raise InputError(f"alert {alert_id} is about '{alert['kind']}': only a new name or address can be taken over")
    if setting("READ_ONLY") is not False:
        raise InputError("cvr_watch is READ_ONLY: it never changes Hub customers. An admin can switch READ_ONLY off "
                         "in the module's settings on the Modules page.")
    if alert["kind"] == "name":
        changes = {"name": alert["new_value"]}
    else:
        address, zipcode, city = json.loads(alert["new_value"])
        changes = {"address": address, "zip": zipcode, "city": city}
    if setting("DRY_RUN") is not False:
        return {"dry_run": True, "customer_id": alert["customer_id"], "changes": changes, "run_id": None}
    changed = update_customer(engine, alert["customer_id"], changes, user=actor.email, role=actor.role)
    run_id = next((h["run_id"] for h in row_history(engine, "customers", alert["customer_id"])), None) if changed \
        else None
    with module_connection(MODULE, engine) as conn:
        conn.execute(text(
            "UPDATE cvr_watch_alerts SET applied_at = :at, applied_by = :by, applied_run_id = :run, "
            "acknowledged_at = COALESCE(acknowledged_at, :at), acknowledged_by = COALESCE(acknowledged_by, :by) "
            "WHERE id = :id"), {"at": now(), "by": actor.email, "run": run_id, "id": alert_id})
    return {"dry_run": False, "customer_id": alert["customer_id"], "changes": changes, "run_id": run_id}


def status(engine: Engine) -> dict:
    """Open alerts, customers watched, the last check: for the health check and the page."""
    with module_connection(MODULE, engine) as conn:
        open_alerts = conn.execute(text("SELECT count(*) FROM cvr_watch_alerts WHERE acknowledged_at IS NULL")).scalar()
        checked, last = conn.execute(text("SELECT count(*), max(checked_at) FROM cvr_watch_snapshots")).one()
        watched = conn.execute(text(
            "SELECT count(*) FROM customers WHERE cvr_number IS NOT NULL AND cvr_number <> ''")).scalar()
    return {"open_alerts": int(open_alerts or 0), "checked": int(checked or 0), "watched": int(watched or 0),
            "last_check": last, "config_problem": config_problem()}
