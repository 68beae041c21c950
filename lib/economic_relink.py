"""e-conomic relink: link Hub customers to e-conomic customer numbers (reads e-conomic, never writes to it).

`plan_economic_relink` reads every e-conomic customer, matches every Hub customer with lib.matching (CVR
first, then name) and classifies each one; it writes nothing. `apply_economic_relink` writes the confident
proposals plus the ones a person approved, in one run with the audit log (undo restores them).
`run_economic_relink` is what `manage.py economic-relink` does. Rules: docs/ECONOMIC_RELINK.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.audit import utcnow
from lib.economic_client import EconomicClient, EconomicCustomer
from lib.errors import ServiceAuthError, ServiceError
from lib.http_session import wait_message
from lib.matching import MatchRecord, MatchResult, MatchSettings, match_records
from lib.runs import ProgressCallback

IMPORT_KIND = "economic-import-customers"
COUNT_KEYS = ("hub_customers", "economic_customers", "linked", "changed", "unchanged", "ambiguous", "unmatched")
OUTCOMES = ("new", "changed", "unchanged", "ambiguous", "conflict", "unmatched")
APPLY_CHUNK = 500


@dataclass(frozen=True)
class EconomicCandidate:
    """An e-conomic customer the engine considered for a Hub customer."""

    number: int
    name: str
    cvr: str | None  # corporateIdentificationNumber as e-conomic holds it (free text)
    score: float
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class RelinkProposal:
    """What the job would do for one Hub customer, with the evidence a person needs to judge it.

    outcome: new (confident, no link yet) · changed (a confident match replaces the current number) ·
    unchanged (linked to the right number, or an existing link kept) · ambiguous (a person must choose) ·
    conflict (linked to an existing e-conomic customer whose CVR contradicts the Hub's) · unmatched.
    `auto`: written without confirmation (new links; changed ones whose old number no longer exists).
    `approvable`: a person may accept `economic_number` (ambiguous best candidate, changed needing confirmation).
    """

    key: str
    customer_id: int
    outcome: str
    hub_name: str
    hub_cvr: str | None
    current_number: int | None
    current_exists: bool
    current_name: str | None
    current_cvr: str | None
    economic_number: int | None
    economic_name: str | None
    economic_cvr: str | None
    score: float | None
    reasons: tuple[str, ...]
    auto: bool = False
    approvable: bool = False
    barred: bool = False
    problems: tuple[str, ...] = ()
    candidates: tuple[EconomicCandidate, ...] = ()


@dataclass
class EconomicRelinkPlan:
    """The proposals of one read of e-conomic; `timings` in seconds (http_s, matching_s, db_s, total_s)."""

    proposals: list[RelinkProposal]
    hub_customers: int
    economic_customers: int
    problems: list[dict]
    requests: int
    timings: dict[str, float]
    created_at: datetime
    without_hub: list[EconomicCustomer] = field(default_factory=list)  # e-conomic customers no Hub customer has

    def by_key(self) -> dict[str, RelinkProposal]:
        return {p.key: p for p in self.proposals}

    def writes(self, approved: Iterable[str] = ()) -> list[RelinkProposal]:
        """The proposals an apply with `approved` writes: automatic ones plus approved approvable ones."""
        chosen = set(approved)
        return [p for p in self.proposals
                if p.economic_number is not None and (p.auto or (p.approvable and p.key in chosen))]

    def counts(self, approved: Iterable[str] = ()) -> dict[str, int]:
        """The interface's counts for an apply with `approved`; every Hub customer is counted exactly once."""
        writes = self.writes(approved)
        written = {p.key for p in writes}
        rest = [p for p in self.proposals if p.key not in written]
        return {
            "hub_customers": self.hub_customers,
            "economic_customers": self.economic_customers,
            "linked": len(writes),
            "changed": sum(1 for p in writes if p.current_number is not None),
            "unchanged": sum(1 for p in rest if p.outcome == "unchanged"),
            "ambiguous": sum(1 for p in rest if p.outcome not in ("unchanged", "unmatched")),
            "unmatched": sum(1 for p in rest if p.outcome == "unmatched"),
        }

    def errors(self) -> list[dict]:
        return [{"customer_id": p["customer_id"], "message": p["message"]} for p in self.problems]


def stored_plan(plan: EconomicRelinkPlan) -> dict:
    """The plan as JSON-ready data, to keep a preview server-side (lib.job_plans); e-conomic's raw JSON is left out."""
    return {**{k: getattr(plan, k) for k in ("hub_customers", "economic_customers", "problems", "requests",
                                             "timings")},
            "created_at": plan.created_at.isoformat(),
            "proposals": [asdict(p) for p in plan.proposals],
            "without_hub": [{k: v for k, v in asdict(c).items() if k != "raw"} for c in plan.without_hub]}


def plan_from_stored(data: dict) -> EconomicRelinkPlan:
    """The EconomicRelinkPlan `stored_plan` kept: the same proposals, keys and counts."""
    proposals = [RelinkProposal(**{
        **p, "reasons": tuple(p["reasons"]), "problems": tuple(p["problems"]),
        "candidates": tuple(EconomicCandidate(**{**c, "reasons": tuple(c["reasons"])}) for c in p["candidates"]),
    }) for p in data["proposals"]]
    return EconomicRelinkPlan(
        proposals=proposals, created_at=datetime.fromisoformat(data["created_at"]),
        without_hub=[EconomicCustomer(**c) for c in data["without_hub"]],
        **{k: data[k] for k in ("hub_customers", "economic_customers", "problems", "requests", "timings")})


def _hub_rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, name, cvr_number, economic_customer_number, zip, city FROM customers ORDER BY id"
        )).mappings().all()
    return [dict(r) for r in rows]


def fetch_economic_customers(client: EconomicClient, on_progress: ProgressCallback | None = None,
                             read: list[EconomicCustomer] | None = None) -> list[EconomicCustomer]:
    """Every e-conomic customer (pages of 1000); `read` collects them as they come, so a failure can say where."""
    customers = read if read is not None else []
    if on_progress:  # rate-limit waits show in the job's progress
        client.session.on_wait = lambda seconds, service: on_progress(len(customers), 0, wait_message(seconds, service))
    for customer in client.iter_customers():
        customers.append(customer)
        if on_progress and len(customers) % client.page_size == 0:
            on_progress(len(customers), 0, f"read {len(customers)} e-conomic customers")
    if on_progress:
        on_progress(len(customers), len(customers), f"read {len(customers)} e-conomic customers")
    return customers


def _candidates(result: MatchResult, eco: dict[int, EconomicCustomer]) -> tuple[EconomicCandidate, ...]:
    out = []
    for c in result.candidates:
        customer = eco[int(c.key)]
        out.append(EconomicCandidate(customer.customer_number, customer.name,
                                     customer.corporate_identification_number, c.score, c.reasons))
    return tuple(out)


def classify(hub_rows: list[dict], eco_customers: list[EconomicCustomer],
             results: dict[object, MatchResult]) -> tuple[list[RelinkProposal], list[dict]]:
    """Turn the engine's answers and the current links into proposals and problems for a person."""
    eco = {c.customer_number: c for c in eco_customers}
    holder = {r["economic_customer_number"]: r for r in hub_rows if r["economic_customer_number"] is not None}
    proposals: list[RelinkProposal] = []
    problems: list[dict] = []
    claimed: dict[int, int] = {}  # e-conomic number → the customer whose automatic proposal takes it

    def problem(kind: str, row: dict, number: int | None, message: str) -> str:
        problems.append({"kind": kind, "customer_id": row["id"], "hub_name": row["name"], "economic_number": number,
                         "message": message})
        return message

    for row in hub_rows:
        cid, current = row["id"], row["economic_customer_number"]
        result = results[cid]
        current_customer = eco.get(current) if current is not None else None
        notes: list[str] = []
        match = result.match if result.status == "confident" else None
        best = match or (result.candidates[0] if result.candidates else None)
        target = eco[int(best.key)] if best is not None else None
        base = {
            "key": f"c{cid}", "customer_id": cid, "hub_name": row["name"], "hub_cvr": row["cvr_number"],
            "current_number": current, "current_exists": current_customer is not None,
            "current_name": current_customer.name if current_customer else None,
            "current_cvr": current_customer.corporate_identification_number if current_customer else None,
            "economic_number": target.customer_number if target else None,
            "economic_name": target.name if target else None,
            "economic_cvr": target.corporate_identification_number if target else None,
            "score": best.score if best else None, "reasons": (result.reason, *(best.reasons if best else ())),
            "barred": bool(target and target.barred), "candidates": _candidates(result, eco),
        }
        other = holder.get(target.customer_number) if target else None
        held_by_other = other is not None and other["id"] != cid
        if current is not None and current_customer is None:
            notes.append(problem("stale_link", row, current,
                                 f"linked to e-conomic customer {current}, which no longer exists in e-conomic"))
        cvr_conflict = bool(current_customer and row["cvr_number"] and current_customer.cvr
                            and current_customer.cvr != row["cvr_number"])
        if cvr_conflict:
            notes.append(problem(
                "cvr_conflict", row, current,
                f"linked to e-conomic customer {current} ({current_customer.name}) whose CVR "
                f"{current_customer.cvr} contradicts the Hub's CVR {row['cvr_number']}; the link is kept"))
        if match is not None and held_by_other and target.customer_number != current:
            notes.append(problem(
                "duplicate_claim", row, target.customer_number,
                f"matches e-conomic customer {target.customer_number} ({target.name}), which Hub customer "
                f"{other['id']} ({other['name']}) already holds"))

        if match is not None and target.customer_number == current:
            outcome, auto, approvable = "unchanged", False, False
        elif match is not None and not held_by_other and target.customer_number not in claimed:
            if current is None:
                outcome, auto, approvable = "new", True, False
            elif current_customer is None:
                outcome, auto, approvable = "changed", True, False
            else:  # an existing link is kept unless a person confirms the change
                outcome, auto, approvable = "changed", False, True
        elif current_customer is not None:
            outcome, auto, approvable = ("conflict" if cvr_conflict else "unchanged"), False, False
        elif result.status == "none" or target is None:
            outcome, auto, approvable = "unmatched", False, False
        else:
            outcome = "ambiguous"
            approvable = not held_by_other and target.customer_number not in claimed
            auto = False
        if auto:
            claimed[target.customer_number] = cid
        barred = {c.customer_number: c for c in (current_customer, target if match is not None else None)
                  if c is not None and c.barred}
        for number, customer in barred.items():
            notes.append(problem("barred", row, number, f"e-conomic customer {number} ({customer.name}) is barred"))
        if outcome == "unchanged" and current_customer is not None and match is None:
            base["reasons"] = ("the existing link is kept", *base["reasons"])
        proposals.append(RelinkProposal(outcome=outcome, auto=auto, approvable=approvable,
                                        problems=tuple(notes), **base))

    # A number an automatic proposal takes is not offered to another customer for approval.
    proposals = [p if not (p.approvable and claimed.get(p.economic_number, p.customer_id) != p.customer_id)
                 else replace(p, approvable=False) for p in proposals]
    return proposals, problems


def plan_economic_relink(engine: Engine, client: EconomicClient, *, settings: MatchSettings | None = None,
                         on_progress: ProgressCallback | None = None,
                         read: list[EconomicCustomer] | None = None) -> EconomicRelinkPlan:
    """Read e-conomic, match and classify; writes nothing. ServiceError from the client propagates."""
    started = time.perf_counter()
    eco_customers = fetch_economic_customers(client, on_progress, read)
    http_s = time.perf_counter() - started
    t = time.perf_counter()
    hub_rows = _hub_rows(engine)
    db_s = time.perf_counter() - t
    t = time.perf_counter()
    hub_records = [MatchRecord(r["id"], r["name"], r["cvr_number"], r["zip"], r["city"]) for r in hub_rows]
    eco_records = [MatchRecord(c.customer_number, c.name, c.cvr, c.zip, c.city) for c in eco_customers]
    results = match_records(hub_records, eco_records, settings)
    proposals, problems = classify(hub_rows, eco_customers, results)
    matching_s = time.perf_counter() - t
    # Any candidate may be some Hub customer: only customers no one even resembles are offered for import.
    linked_numbers = {r["economic_customer_number"] for r in hub_rows} | {
        c.number for p in proposals for c in p.candidates} | {
        p.economic_number for p in proposals if p.economic_number is not None}
    without_hub = [c for c in eco_customers if c.customer_number not in linked_numbers]
    total_s = time.perf_counter() - started
    return EconomicRelinkPlan(
        proposals=proposals, hub_customers=len(hub_rows), economic_customers=len(eco_customers), problems=problems,
        requests=client.requests_made, created_at=utcnow(), without_hub=without_hub,
        timings={"http_s": round(http_s, 3), "db_s": round(db_s, 3), "matching_s": round(matching_s, 3),
                 "total_s": round(total_s, 3)},
    )


def preview_economic_relink(engine: Engine, *, on_progress: ProgressCallback | None = None) -> EconomicRelinkPlan:
    """The plan with the configured client (what the page's Preview does); ConfigError before any request."""
    with EconomicClient.from_settings() as client:
        return plan_economic_relink(engine, client, on_progress=on_progress)


def stopped_message(exc: ServiceError, read: int, page_size: int) -> str:
    where = f"while reading e-conomic customers (page {read // page_size + 1}, {read} read); nothing was written"
    if isinstance(exc, ServiceAuthError):
        return (f"{exc} — check ECONOMIC_APP_SECRET_TOKEN and ECONOMIC_AGREEMENT_GRANT_TOKEN; {where}")
    return f"{exc}; {where}"


def hub_customer_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM customers")).scalar_one())


# The job (plan → approve → apply as one run) is lib/jobs/economic_relink.py; these names stay for callers.

def run_economic_relink(engine: Engine, **kwargs) -> dict:
    """Plan, then (with `apply`) write; see lib.jobs.economic_relink.run_economic_relink."""
    from lib.jobs.economic_relink import run_economic_relink as run

    return run(engine, **kwargs)


def apply_economic_relink(engine: Engine, plan: EconomicRelinkPlan, **kwargs) -> dict:
    """Write a preview's proposals as one run; see lib.jobs.economic_relink.apply_economic_relink."""
    from lib.jobs.economic_relink import apply_economic_relink as apply

    return apply(engine, plan, **kwargs)


def preview_import(plan: EconomicRelinkPlan) -> list[dict]:
    """The Hub customers `import_unlinked_customers` would create: one per e-conomic customer no one holds."""
    return [{"name": c.name, "cvr_number": c.cvr, "economic_customer_number": c.customer_number,
             "email": c.email, "phone": c.phone, "address": c.address, "zip": c.zip, "city": c.city}
            for c in plan.without_hub]


def import_unlinked_customers(engine: Engine, plan: EconomicRelinkPlan, **kwargs) -> dict:
    """Create Hub customers for e-conomic customers that have none, as one run (undo removes them); a row whose
    number or CVR a Hub customer holds by now is skipped and reported. See
    lib.jobs.economic_relink.import_unlinked_customers."""
    from lib.jobs.economic_relink import import_unlinked_customers as create

    return create(engine, plan, **kwargs)
