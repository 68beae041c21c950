"""The CVR lookup job: find CVR numbers for customers that lack one, by a name search at cvrapi.dk.

cvrapi.dk answers a name search with ONE company, often a similar but different one, and allows 50 free
lookups a day. So: every answer is cached (lib.cvr_cache), a candidate costs at most one request per run
(the session does not retry), the matching engine's strict `judge_single` decides, and only confident
answers (or those a person approved) are written. docs/CVR_LOOKUP.md has the rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from rapidfuzz import fuzz
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine

from lib.audit import read_row
from lib.company_names import normalize_company_name
from lib.config import Settings, get_settings
from lib.cvr_cache import FOUND as CACHE_FOUND
from lib.cvr_cache import CvrCache, query_key, requests_today
from lib.cvr_client import CvrClient, CvrCompany, check_user_agent, companies_in
from lib.errors import ConfigError, InputError, ServiceError, ServiceQuotaError
from lib.http_session import make_session
from lib.matching import MatchRecord, MatchResult, MatchSettings, judge_single, match_records
from lib.runs import ProgressCallback

FOUND = "found"
AMBIGUOUS = "ambiguous"
NOT_FOUND = "not_found"
OUTCOMES = (FOUND, AMBIGUOUS, NOT_FOUND)
FREE_LOOKUPS_PER_DAY = 50
QUOTA_MARK = "_quota_exhausted:"  # a cvr_cache row marking the day the service refused us (never a query key)
QUOTA_DAY_ZONE = "Europe/Copenhagen"
COUNT_KEYS = ("candidates", "found", "updated", "not_found", "ambiguous", "not_asked", "quota_exhausted")


@dataclass(frozen=True)
class CvrProposal:
    """What the lookup found for one customer, with the evidence a person needs to judge it."""

    key: str  # "<customer id>:<CVR or ->": an approval binds to this exact company
    customer_id: int
    customer_name: str
    customer_zip: str | None
    customer_city: str | None
    outcome: str  # found | ambiguous | not_found
    reason: str
    company_name: str | None = None
    cvr: str | None = None
    address: str | None = None  # "street, zip city" as the register has it
    score: float | None = None  # name score 0..100 after normalisation
    reasons: tuple[str, ...] = ()
    ceased: str | None = None  # the end date when the company has ceased
    approvable: bool = False  # a person may accept it (ambiguous, active, CVR free)
    from_cache: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class CvrLookupPlan:
    """The proposals of one lookup (nothing written yet) and how the service behaved."""

    proposals: list[CvrProposal] = field(default_factory=list)
    candidates: int = 0
    not_asked: list[int] = field(default_factory=list)  # customer ids left for the next run (service stopped)
    requests_made: int = 0
    stopped: str | None = None
    quota_exhausted: bool = False
    parameters: dict = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for p in self.proposals if p.outcome == outcome)

    def by_key(self) -> dict[str, CvrProposal]:
        return {p.key: p for p in self.proposals}


@dataclass(frozen=True)
class QuotaStatus:
    """Today's cvrapi.dk quota as far as this database knows (the service counts per IP address)."""

    used_today: int
    limit: int | None  # None with a paid token
    exhausted_today: bool

    @property
    def left(self) -> int | None:
        if self.limit is None:
            return None
        return 0 if self.exhausted_today else max(0, self.limit - self.used_today)


def stored_plan(plan: CvrLookupPlan) -> dict:
    """The plan as JSON-ready data, to keep a preview server-side (lib.job_plans)."""
    return asdict(plan)


def plan_from_stored(data: dict) -> CvrLookupPlan:
    """The CvrLookupPlan `stored_plan` kept: the same proposals, keys and counts."""
    proposals = [CvrProposal(**{**p, "reasons": tuple(p["reasons"])}) for p in data["proposals"]]
    return CvrLookupPlan(**{**data, "proposals": proposals})


# ---------------------------------------------------------------- client, quota, candidates

def make_client(engine: Engine, settings: Settings | None = None) -> CvrClient:
    """A cached cvrapi.dk client whose session never retries: a retry would be a second request for a candidate.

    Raises ConfigError (exit 2) before any request when CVR_USER_AGENT is missing or generic.
    """
    s = settings or get_settings()
    client = CvrClient(
        s.cvr_api_url, s.cvr_user_agent, s.cvr_api_token, cache=CvrCache(engine, s.cvr_cache_days),
        timeout=s.http_timeout_seconds,
        session=make_session(timeout=s.http_timeout_seconds, retries=0, wait_budget=0, service="cvrapi.dk"),
    )
    return client


def config_problem(settings: Settings | None = None) -> str | None:
    """Why a lookup cannot start (missing or generic CVR_USER_AGENT, empty URL), or None."""
    s = settings or get_settings()
    try:
        check_user_agent(s.cvr_user_agent)
    except ConfigError as exc:
        return str(exc)
    return None if s.cvr_api_url else "CVR_API_URL is empty"


def _day_start_utc(now: datetime | None = None) -> tuple[datetime, str]:
    """Midnight of today in Denmark (where the quota's day is), as naive UTC, and the day's ISO date."""
    try:
        zone = ZoneInfo(QUOTA_DAY_ZONE)
    except Exception:  # noqa: BLE001 - no tz database: UTC days are close enough
        zone = UTC
    local = (now or datetime.now(UTC)).astimezone(zone)
    start = datetime.combine(local.date(), time(0), tzinfo=zone).astimezone(UTC).replace(tzinfo=None)
    return start, local.date().isoformat()


def quota_status(engine: Engine, settings: Settings | None = None) -> QuotaStatus:
    """Requests sent to cvrapi.dk today (lib.cvr_cache.requests_today; at least today's cache rows), and whether it
    refused us."""
    s = settings or get_settings()
    start, day = _day_start_utc()
    with engine.connect() as conn:
        used = conn.execute(
            text("SELECT count(*) FROM cvr_cache WHERE fetched_at >= :start AND query_key NOT LIKE :mark"),
            {"start": start, "mark": QUOTA_MARK + "%"},
        ).scalar_one()
        marked = conn.execute(
            text("SELECT 1 FROM cvr_cache WHERE query_key = :k"), {"k": QUOTA_MARK + day}
        ).first() is not None
    used = max(int(used), requests_today(engine))
    return QuotaStatus(used, None if s.cvr_api_token else FREE_LOOKUPS_PER_DAY, marked)


def _mark_quota_exhausted(cache: CvrCache | None) -> None:
    if cache is not None:
        cache.put(QUOTA_MARK + _day_start_utc()[1], "quota_exceeded", None)


def count_missing_cvr(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM customers WHERE cvr_number IS NULL")).scalar_one())


def _search_name(name: str) -> str:
    return " ".join(str(name).split())


def _candidates(engine: Engine, customer_ids: Iterable[int] | None) -> list[dict]:
    sql = "SELECT id, name, zip, city FROM customers WHERE cvr_number IS NULL"
    params: dict = {}
    statement = text(sql + " ORDER BY id")
    if customer_ids is not None:
        params["ids"] = [int(i) for i in customer_ids]
        statement = text(sql + " AND id IN :ids ORDER BY id").bindparams(bindparam("ids", expanding=True))
        if not params["ids"]:
            return []
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(statement, params).mappings()]


def _fresh_name_keys(cache: CvrCache | None) -> set[str]:
    if cache is None:
        return set()
    cutoff = datetime.now(UTC).replace(tzinfo=None) - cache.max_age
    with cache.engine.connect() as conn:
        return set(conn.execute(
            text("SELECT query_key FROM cvr_cache WHERE query_key LIKE 'name:%' AND fetched_at >= :cutoff"),
            {"cutoff": cutoff},
        ).scalars())


def _cached_answer(client: CvrClient, name: str) -> list[CvrCompany] | None:
    """The cached answer for a name search, or None when it would cost a request."""
    if client.cache is None:
        return None
    entry = client.cache.get(query_key("name", name))
    if entry is None:
        return None
    return companies_in(entry.response) if entry.status == CACHE_FOUND else []


# ---------------------------------------------------------------- judging

def _address(company: CvrCompany) -> str:
    place = " ".join(p for p in (company.zipcode, company.city) if p)
    return ", ".join(p for p in (company.address, place) if p)


def _judge(customer: dict, companies: list[CvrCompany], settings: MatchSettings) -> tuple[MatchResult, CvrCompany]:
    """The engine's verdict on the service's answer, and the company it concerns."""
    hub = MatchRecord(customer["id"], customer["name"], None, customer.get("zip"), customer.get("city"))
    records = [MatchRecord(c.cvr, c.name, c.cvr, c.zipcode, c.city) for c in companies]
    if len(records) == 1:
        result = judge_single(hub, records[0], settings)
    else:  # the [U] "hits" list variant: the same strict rules over every company it lists
        strict = replace(settings, word_edits=0, long_word_edits=0) if settings.single_exact_words else settings
        result = match_records([hub], records, strict)[hub.key]
    chosen_key = result.match.key if result.match else (result.candidates[0].key if result.candidates else None)
    company = next((c for c in companies if c.cvr == chosen_key), companies[0])
    return result, company


def _proposal(customer: dict, companies: list[CvrCompany], settings: MatchSettings, from_cache: bool) -> CvrProposal:
    base = {"customer_id": customer["id"], "customer_name": customer["name"], "customer_zip": customer.get("zip"),
            "customer_city": customer.get("city"), "from_cache": from_cache}
    if not companies:
        return CvrProposal(key=f"{customer['id']}:-", outcome=NOT_FOUND,
                           reason="cvrapi.dk has no company by this name", **base)
    result, company = _judge(customer, companies, settings)
    candidate = result.match or next((c for c in result.candidates if c.key == company.cvr), None)
    score = candidate.score if candidate else round(fuzz.ratio(
        normalize_company_name(customer["name"]), normalize_company_name(company.name)), 1)
    reasons = candidate.reasons if candidate else (f"name score {score:.1f}",)
    evidence = {"company_name": company.name, "cvr": company.cvr, "address": _address(company), "score": score,
                "reasons": reasons, "key": f"{customer['id']}:{company.cvr}"}
    if result.status == "none":
        return CvrProposal(outcome=NOT_FOUND, reason=f"cvrapi.dk answered {company.name} (CVR {company.cvr}), "
                           f"a different name: {result.reason}", **evidence, **base)
    if company.end_date is not None:
        return CvrProposal(outcome=AMBIGUOUS, ceased=company.end_date.isoformat(),
                           reason=f"{company.name} ceased on {company.end_date.isoformat()}; a ceased company is "
                           "never applied", **evidence, **base)
    if result.status == "confident":
        return CvrProposal(outcome=FOUND, reason=result.reason, **evidence, **base)
    return CvrProposal(outcome=AMBIGUOUS, approvable=True, reason=result.reason, **evidence, **base)


def _cvr_holders(engine: Engine, cvrs: set[str]) -> dict[str, dict]:
    if not cvrs:
        return {}
    statement = text("SELECT id, name, cvr_number FROM customers WHERE cvr_number IN :cvrs").bindparams(
        bindparam("cvrs", expanding=True))
    with engine.connect() as conn:
        return {r["cvr_number"]: dict(r) for r in conn.execute(statement, {"cvrs": sorted(cvrs)}).mappings()}


def _one_customer_per_cvr(engine: Engine, proposals: list[CvrProposal]) -> list[CvrProposal]:
    """A CVR another customer holds, or one found for two candidates, needs a person (never two customers, one CVR)."""
    holders = _cvr_holders(engine, {p.cvr for p in proposals if p.cvr and p.outcome != NOT_FOUND})
    found_for = Counter(p.cvr for p in proposals if p.outcome == FOUND)
    out = []
    for p in proposals:
        if p.outcome == NOT_FOUND or not p.cvr:
            out.append(p)
            continue
        holder = holders.get(p.cvr)
        if holder is not None:
            why = f"CVR {p.cvr} already belongs to customer {holder['id']} ({holder['name']})"
            out.append(replace(p, outcome=AMBIGUOUS, approvable=False, reason=f"{why}; {p.reason}"))
        elif p.outcome == FOUND and found_for[p.cvr] > 1:
            others = [q.customer_id for q in proposals if q.cvr == p.cvr and q.outcome == FOUND and q is not p]
            why = f"CVR {p.cvr} was found for customer(s) {', '.join(map(str, others))} as well"
            out.append(replace(p, outcome=AMBIGUOUS, approvable=True, reason=f"{why}; {p.reason}"))
        elif p.outcome == AMBIGUOUS and p.approvable and found_for[p.cvr]:
            out.append(replace(p, approvable=False, reason=f"CVR {p.cvr} is found for another customer; {p.reason}"))
        else:
            out.append(p)
    return out


# ---------------------------------------------------------------- plan and apply

def plan_cvr_lookup(
    engine: Engine, client: CvrClient, *, limit: int | None = None, customer_ids: Iterable[int] | None = None,
    settings: MatchSettings | None = None, on_progress: ProgressCallback | None = None,
) -> CvrLookupPlan:
    """Ask cvrapi.dk (cache first) about each customer without a CVR and judge the answers; writes no customer.

    Customers never asked come first (so `limit` makes progress day by day), then those answered before (free).
    When the service stops us (quota, ban, outage) the rest is decided from the cache only; the others are
    listed in `not_asked` for the next run.
    """
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, got {limit}")
    ids = None if customer_ids is None else sorted({int(i) for i in customer_ids})
    match_settings = settings or MatchSettings()
    known = _fresh_name_keys(client.cache)
    rows = _candidates(engine, ids)
    rows.sort(key=lambda r: (query_key("name", _search_name(r["name"])) in known, r["id"]))
    if limit is not None:
        rows = rows[:limit]
    plan = CvrLookupPlan(candidates=len(rows), parameters={"limit": limit, "customer_ids": ids})
    before = client.requests_made
    proposals: list[CvrProposal] = []
    total = len(rows)
    for done, customer in enumerate(rows, start=1):
        name = _search_name(customer["name"])
        cached = _cached_answer(client, name)
        if cached is None and plan.stopped:
            plan.not_asked.append(customer["id"])
        else:
            companies = cached
            if companies is None:
                try:
                    companies = client.search_name(name)
                except ServiceError as exc:
                    plan.stopped = f"{exc} (at customer {customer['id']}, {done} of {total})"
                    plan.quota_exhausted = isinstance(exc, ServiceQuotaError)
                    if plan.quota_exhausted:
                        _mark_quota_exhausted(client.cache)
                    plan.not_asked.append(customer["id"])
            if companies is not None:
                proposals.append(_proposal(customer, companies, match_settings, cached is not None))
        if on_progress:
            on_progress(done, total, customer["name"][:80])
    plan.proposals = _one_customer_per_cvr(engine, proposals)
    plan.requests_made = client.requests_made - before
    return plan


def _lock_customer(conn: Connection, customer_id: int, lock: bool) -> dict | None:
    if lock and conn.dialect.name == "postgresql":
        conn.execute(text("SELECT id FROM customers WHERE id = :id FOR UPDATE"), {"id": customer_id})
    return read_row(conn, "customers", customer_id)


def why_not_writable(conn: Connection, p: CvrProposal, lock: bool) -> str | None:
    current = _lock_customer(conn, p.customer_id, lock)
    if current is None:
        return "the customer no longer exists"
    if current["cvr_number"]:
        return f"the customer has CVR {current['cvr_number']} now; it is never overwritten"
    holder = conn.execute(text("SELECT id FROM customers WHERE cvr_number = :c AND id <> :id"),
                          {"c": p.cvr, "id": p.customer_id}).first()
    if holder is not None:
        return f"CVR {p.cvr} belongs to customer {holder[0]} now"
    return None


def public_proposal(p: CvrProposal) -> dict:
    """A proposal as the payload lists it."""
    return {"key": p.key, "customer_id": p.customer_id, "customer_name": p.customer_name, "outcome": p.outcome,
            "company_name": p.company_name, "cvr": p.cvr, "address": p.address, "score": p.score,
            "reason": p.reason, "ceased": p.ceased, "approvable": p.approvable}


# The job itself (plan → approve → apply as one run) is lib/jobs/cvr_lookup.py; these names stay for callers.

def run_cvr_lookup(engine: Engine, **kwargs) -> dict:
    """Plan, then (with `apply`) write; see lib.jobs.cvr_lookup.run_cvr_lookup."""
    from lib.jobs.cvr_lookup import run_cvr_lookup as run

    return run(engine, **kwargs)


def apply_cvr_lookup(engine: Engine, plan: CvrLookupPlan, **kwargs) -> dict:
    """Write a preview's proposals as one run; see lib.jobs.cvr_lookup.apply_cvr_lookup."""
    from lib.jobs.cvr_lookup import apply_cvr_lookup as apply

    return apply(engine, plan, **kwargs)


def lookup_one(engine: Engine, customer_id: int, **kwargs) -> dict:
    """One customer's lookup (the customer page's button); see lib.jobs.cvr_lookup.lookup_one."""
    from lib.jobs.cvr_lookup import lookup_one as one

    return one(engine, customer_id, **kwargs)
