"""CRM sync: link vTiger / Simply-CRM accounts to Hub customers and fill the Hub's missing CVR numbers.

Per account, in this order: the account id the Hub stored for that source, then the CVR, then the name
(lib.matching). A confident link stores the account id; a valid CRM CVR fills an empty Hub CVR. Where both
hold a CVR and they differ it is a conflict for a person (keep Hub / take CRM), never overwritten silently.
Optional write-back (setting CRM_WRITE_BACK) fills the CRM's empty CVR field from the Hub. docs/CRM_SYNC.md.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.config import Settings, get_settings
from lib.cvr import normalize_cvr
from lib.errors import ConfigError, InputError, ServiceError
from lib.http_session import wait_message
from lib.jobs import job_payload
from lib.matching import MatchRecord, MatchResult, match_records
from lib.roles import Actor, require_role
from lib.vtiger_client import LABELS, CrmAccount, VtigerClient

KIND = "crm-sync"
WRITE_BACK_KIND = "crm-write-back"
SOURCES = ("vtiger", "simplycrm")
COUNT_KEYS = ("accounts", "updated", "unchanged", "conflicts", "unmatched", "linked", "ambiguous")
OUTCOMES = ("fill", "link", "unchanged", "conflict", "ambiguous", "unmatched")
CHUNK = 200  # rows per write transaction: progress is recorded between them (SQLite allows one writer)

ProgressCallback = Callable[[int, int, str], None]


@dataclass(frozen=True)
class CrmProposal:
    """What the sync would do for one CRM account, with the evidence a person needs to judge it.

    outcome: fill (write the CRM's CVR into the Hub, link when new), link (store the account id only),
    unchanged, conflict (CVRs differ or the CVR belongs to another customer; `approvable` = "take CRM"
    possible), ambiguous (no confident customer; approving links the best candidate), unmatched.
    """

    key: str
    source: str
    account_id: str
    account_name: str
    outcome: str
    crm_cvr_raw: str | None = None
    crm_cvr: str | None = None
    customer_id: int | None = None
    customer_name: str | None = None
    hub_cvr: str | None = None
    hub_account_id: str | None = None  # the customer's stored id for this source, as planned
    link_by: str | None = None  # "account id" | "CVR" | "name"
    store_link: bool = False
    new_cvr: str | None = None  # what apply writes to cvr_number (conflicts and ambiguous only when approved)
    approvable: bool = False
    score: float | None = None
    reasons: tuple[str, ...] = ()
    cvr_source: str | None = None  # where the Hub's CVR came from, when another CRM sync filled it

    @property
    def needs_approval(self) -> bool:
        return self.outcome in ("conflict", "ambiguous")


@dataclass
class CrmSyncPlan:
    source: str
    cvr_field: str | None
    accounts: list[CrmAccount]
    proposals: list[CrmProposal]
    errors: list[dict]
    stopped: str | None = None
    missing: int = 0  # accounts the CRM counted but the read did not return (hidden by permissions)

    @property
    def label(self) -> str:
        return LABELS.get(self.source, self.source)

    def by_key(self) -> dict[str, CrmProposal]:
        return {p.key: p for p in self.proposals}

    def counts(self, approved: Iterable[str] = ()) -> dict[str, int]:
        """The interface's counts when the confident proposals and the `approved` ones are applied."""
        chosen = set(approved)
        done_cvr = {p.key for p in self.proposals if p.new_cvr and _is_chosen(p, chosen)}
        done_link = {p.key for p in self.proposals if p.store_link and _is_chosen(p, chosen)}
        return _counts(self, done_cvr, done_link, chosen)


def _is_chosen(p: CrmProposal, approved: set[str]) -> bool:
    if p.outcome in ("fill", "link"):
        return True
    return p.needs_approval and p.approvable and p.key in approved


def _counts(plan: CrmSyncPlan, done_cvr: set[str], done_link: set[str], approved: set[str]) -> dict[str, int]:
    out = dict.fromkeys(COUNT_KEYS, 0)
    out["accounts"] = len(plan.accounts)
    out["linked"] = len(done_link)
    for p in plan.proposals:
        if p.key in done_cvr:
            out["updated"] += 1
        elif p.outcome == "conflict":
            out["conflicts"] += 1
        elif p.outcome == "ambiguous" and p.key not in done_link:
            out["ambiguous"] += 1
        elif p.outcome == "unmatched":
            out["unmatched"] += 1
        else:
            out["unchanged"] += 1
    return out


def id_column(source: str) -> str:
    if source not in SOURCES:
        raise InputError(f"unknown CRM source {source!r}; use vtiger or simplycrm")
    return f"{source}_account_id"


def open_client(source: str, settings: Settings | None = None) -> VtigerClient:
    """The configured client; ConfigError (exit 2) before any request when URL, user or key is missing."""
    id_column(source)
    return VtigerClient.from_settings(source, settings)


# --- reading the Hub ------------------------------------------------------------------------------------------

def _hub_customers(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, name, cvr_number, vtiger_account_id, simplycrm_account_id, zip, city FROM customers ORDER BY id"
        )).mappings().all()
    return [dict(r) for r in rows]


def _cvr_origins(engine: Engine) -> dict[int, tuple[str, int]]:
    """customer id → (source, run id) for customers whose current CVR was last written by a CRM sync."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT c.row_id, c.run_id, r.kind, r.parameters FROM changes c LEFT JOIN runs r ON r.id = c.run_id "
            "WHERE c.table_name = 'customers' AND c.field = 'cvr_number' ORDER BY c.id"
        )).mappings().all()
    last: dict[int, dict] = {}
    for row in rows:
        last[int(row["row_id"])] = dict(row)
    out: dict[int, tuple[str, int]] = {}
    for customer_id, row in last.items():
        if row["kind"] != KIND:
            continue
        try:
            source = json.loads(row["parameters"] or "{}").get("source")
        except ValueError:
            continue
        if source in SOURCES:
            out[customer_id] = (source, int(row["run_id"]))
    return out


# --- planning -------------------------------------------------------------------------------------------------

def _read_accounts(client: VtigerClient,
                   on_progress: ProgressCallback | None) -> tuple[list[CrmAccount], str | None, str | None]:
    """(accounts, CVR field, stopped): every account, paged by the client; on a service failure the accounts read
    so far and where it stopped."""
    accounts: list[CrmAccount] = []
    cvr_field: str | None = None
    label = f"reading {client.label} accounts"

    def total() -> int:
        return max(client.accounts_counted or 0, len(accounts))

    if on_progress:
        client.session.on_wait = lambda seconds, service: on_progress(len(accounts), total(),
                                                                      wait_message(seconds, service))
    try:
        cvr_field = client.cvr_field()
        if on_progress:
            on_progress(0, 0, label)
        for account in client.iter_accounts():
            accounts.append(account)
            if on_progress and len(accounts) % 100 == 0:
                on_progress(len(accounts), total(), label)
    except ServiceError as exc:
        return accounts, cvr_field, f"{exc} (after reading {len(accounts)} account(s))"
    if on_progress:
        on_progress(len(accounts), len(accounts), f"{len(accounts)} {client.label} accounts read")
    return accounts, cvr_field, None


def _missing(client: VtigerClient, accounts: list[CrmAccount], stopped: str | None) -> int:
    """How many accounts `count(*)` promised that a complete read did not return (0 when it cannot count)."""
    if stopped or client.accounts_counted is None:
        return 0
    return max(0, client.accounts_counted - len(accounts))


def plan_crm_sync(engine: Engine, client: VtigerClient, *, on_progress: ProgressCallback | None = None) -> CrmSyncPlan:
    """Read every account of `client`'s CRM and decide per account; writes nothing."""
    source = client.name
    col = id_column(source)
    accounts, cvr_field, stopped = _read_accounts(client, on_progress)
    missing = _missing(client, accounts, stopped)
    customers = _hub_customers(engine)
    origins = _cvr_origins(engine)
    # an incomplete read cannot tell "account gone" from "account not seen": stored ids are then kept
    planner = _Planner(source, col, accounts, customers, origins, partial=stopped is not None or missing > 0)
    proposals = planner.decide()
    if missing:
        planner.errors.append({"account_id": None, "customer_id": None, "message": (
            f"{client.label} counted {client.accounts_counted} accounts but returned {len(accounts)}: {missing} "
            "missing (hidden from this user by permissions, or changed during the read); stored links to accounts "
            "not read are kept, not treated as stale")})
    return CrmSyncPlan(source, cvr_field, accounts, proposals, planner.errors, stopped, missing)


class _Planner:
    def __init__(self, source: str, col: str, accounts: list[CrmAccount], customers: list[dict],
                 origins: dict[int, tuple[str, int]], partial: bool) -> None:
        self.source, self.col, self.accounts, self.origins = source, col, accounts, origins
        self.label = LABELS[source]
        self.customers = {c["id"]: c for c in customers}
        self.by_cvr = {c["cvr_number"]: c["id"] for c in customers if c["cvr_number"]}
        self.by_account: dict[str, list[int]] = defaultdict(list)
        for c in customers:
            if c[col]:
                self.by_account[str(c[col])].append(c["id"])
        self.account_ids = {a.id for a in accounts}
        # A customer whose stored id names an account we read is taken; a stale id (account gone) frees it,
        # unless the read stopped early and "gone" cannot be told from "not read yet".
        self.available = [c for c in customers if not c[col] or (not partial and str(c[col]) not in self.account_ids)]
        self.errors: list[dict] = []

    def decide(self) -> list[CrmProposal]:
        decided: dict[str, CrmProposal] = {}
        rest: list[CrmAccount] = []
        for account in self.accounts:
            self._check_cvr(account)
            holders = self.by_account.get(account.id, [])
            if len(holders) == 1:
                decided[account.id] = self._linked(account, self.customers[holders[0]], "account id", None, ())
            elif len(holders) > 1:
                decided[account.id] = self._proposal(
                    account, "ambiguous", reasons=(f"customers {', '.join(map(str, holders))} all store this account id",))
            else:
                rest.append(account)
        decided.update(self._match(rest))
        proposals = [decided[a.id] for a in self.accounts]
        linked_to = {p.account_id: p.customer_id for p in proposals if p.outcome in ("fill", "link", "unchanged")}
        for error in self.errors:  # invalid CVRs were reported before their account was linked
            if error["customer_id"] is None:
                error["customer_id"] = linked_to.get(error["account_id"])
        return self._one_customer_per_cvr(proposals)

    def _check_cvr(self, account: CrmAccount) -> None:
        if account.cvr_raw and not account.cvr:
            self.errors.append({"account_id": account.id, "customer_id": None,
                                "message": f"{account.name}: the CRM's CVR value {account.cvr_raw!r} is not a valid "
                                           "CVR number; not written"})

    def _proposal(self, account: CrmAccount, outcome: str, **kw) -> CrmProposal:
        return CrmProposal(key=f"{self.source}:{account.id}", source=self.source, account_id=account.id,
                           account_name=account.name, outcome=outcome, crm_cvr_raw=account.cvr_raw,
                           crm_cvr=account.cvr, **kw)

    def _match(self, accounts: list[CrmAccount]) -> dict[str, CrmProposal]:
        if not accounts:
            return {}
        records = [MatchRecord(a.id, a.name, a.cvr, a.zip, a.city) for a in accounts]
        hub = [MatchRecord(c["id"], c["name"], c["cvr_number"], c["zip"], c["city"]) for c in self.available]
        results = match_records(records, hub)
        by_id = {a.id: a for a in accounts}
        out: dict[str, CrmProposal] = {}
        second: list[CrmAccount] = []
        for account in accounts:
            result = results[account.id]
            if result.status == "confident" and result.match is not None:
                how = "CVR" if result.match.by_cvr else "name"
                out[account.id] = self._linked(account, self.customers[int(result.match.key)], how,
                                               result.match.score, result.match.reasons)
            elif result.status == "ambiguous":
                out[account.id] = self._ambiguous(account, result)
            elif account.cvr:
                second.append(account)
            else:
                out[account.id] = self._proposal(account, "unmatched", reasons=(result.reason,))
        out.update(self._name_conflicts(second, by_id))
        return out

    def _name_conflicts(self, accounts: list[CrmAccount], by_id: dict[str, CrmAccount]) -> dict[str, CrmProposal]:
        """Accounts whose CVR matched nobody: a confident name match to a customer with another CVR is a conflict."""
        out: dict[str, CrmProposal] = {}
        if not accounts:
            return out
        holders = [c for c in self.available if normalize_cvr(c["cvr_number"])]
        records = [MatchRecord(a.id, a.name, None, a.zip, a.city) for a in accounts]
        hub = [MatchRecord(c["id"], c["name"], None, c["zip"], c["city"]) for c in holders]
        results = match_records(records, hub) if hub else {}
        for account in accounts:
            result = results.get(account.id)
            if result is not None and result.status == "confident" and result.match is not None:
                customer = self.customers[int(result.match.key)]
                out[account.id] = self._linked(account, customer, "name", result.match.score, result.match.reasons)
            else:
                out[account.id] = self._proposal(
                    account, "unmatched",
                    reasons=(f"no Hub customer has CVR {account.cvr} or a confidently similar name",))
        return out

    def _ambiguous(self, account: CrmAccount, result: MatchResult) -> CrmProposal:
        best = result.candidates[0] if result.candidates else None
        names = "; ".join(f"{c.name} (customer {c.key}, score {c.score:g})" for c in result.candidates[:3])
        reasons = (result.reason, f"candidates: {names}") if names else (result.reason,)
        if best is None:
            return self._proposal(account, "ambiguous", reasons=reasons)
        customer = self.customers[int(best.key)]
        new_cvr = None
        if account.cvr and not customer["cvr_number"] and self.by_cvr.get(account.cvr) in (None, customer["id"]):
            new_cvr = account.cvr
        return self._proposal(
            account, "ambiguous", customer_id=customer["id"], customer_name=customer["name"],
            hub_cvr=customer["cvr_number"], hub_account_id=customer[self.col], link_by="name", store_link=True,
            new_cvr=new_cvr, approvable=True, score=best.score, reasons=reasons)

    def _linked(self, account: CrmAccount, customer: dict, how: str, score: float | None,
                reasons: tuple[str, ...]) -> CrmProposal:
        hub_cvr = customer["cvr_number"]
        stored = customer[self.col]
        store_link = str(stored or "") != account.id
        why = list(reasons) or ([f"the Hub stores account id {account.id}"] if how == "account id" else [])
        if store_link and stored:
            why.append(f"replaces the stale link {stored} (no such account in {self.label})")
        base = dict(customer_id=customer["id"], customer_name=customer["name"], hub_cvr=hub_cvr,
                    hub_account_id=stored, link_by=how, score=score)
        origin = self.origins.get(customer["id"])
        cvr_source = f"{LABELS[origin[0]]} (run {origin[1]})" if origin else None
        if account.cvr and hub_cvr and account.cvr != hub_cvr:
            why.append(f"the Hub has CVR {hub_cvr}, {self.label} has {account.cvr}")
            if origin and origin[0] != self.source:
                why.append(f"the Hub's CVR was filled from {cvr_source}: the two CRMs disagree")
            holder = self.by_cvr.get(account.cvr)
            approvable = holder is None
            if holder is not None:
                why.append(f"CVR {account.cvr} belongs to customer {holder} in the Hub")
            self.errors.append({"account_id": account.id, "customer_id": customer["id"],
                                "message": f"conflict: {account.name}: Hub CVR {hub_cvr}, {self.label} CVR "
                                           f"{account.cvr}; not overwritten"})
            return self._proposal(account, "conflict", **base, store_link=store_link, new_cvr=account.cvr,
                                  approvable=approvable, reasons=tuple(why), cvr_source=cvr_source)
        if account.cvr and not hub_cvr:
            holder = self.by_cvr.get(account.cvr)
            if holder is not None and holder != customer["id"]:
                why.append(f"CVR {account.cvr} already belongs to customer {holder}")
                self.errors.append({"account_id": account.id, "customer_id": customer["id"],
                                    "message": f"{account.name}: CVR {account.cvr} already belongs to customer "
                                               f"{holder}; not written"})
                return self._proposal(account, "conflict", **base, reasons=tuple(why))
            why.append(f"fills the missing CVR with {account.cvr}")
            return self._proposal(account, "fill", **base, store_link=store_link, new_cvr=account.cvr,
                                  reasons=tuple(why), cvr_source=cvr_source)
        if store_link:
            return self._proposal(account, "link", **base, store_link=True, reasons=tuple(why), cvr_source=cvr_source)
        return self._proposal(account, "unchanged", **base, reasons=tuple(why), cvr_source=cvr_source)

    def _one_customer_per_cvr(self, proposals: list[CrmProposal]) -> list[CrmProposal]:
        """Two fills of one CVR (two accounts, two customers) would break uniqueness: both become conflicts."""
        by_cvr: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(proposals):
            if p.outcome == "fill":
                by_cvr[str(p.new_cvr)].append(i)
        for cvr, idx in by_cvr.items():
            if len(idx) < 2:
                continue
            customers = ", ".join(str(proposals[i].customer_id) for i in idx)
            for i in idx:
                p = proposals[i]
                proposals[i] = replace(p, outcome="conflict", new_cvr=None, store_link=False, approvable=False,
                                       reasons=(*p.reasons, f"CVR {cvr} is proposed for customers {customers}"))
                self.errors.append({"account_id": p.account_id, "customer_id": p.customer_id,
                                    "message": f"{p.account_name}: CVR {cvr} is held by several accounts matched to "
                                               f"customers {customers}; not written"})
        return proposals


# --- applying -------------------------------------------------------------------------------------------------

def dry_run_payload(plan: CrmSyncPlan) -> dict:
    """What an apply of the confident proposals would do; stores no run."""
    return job_payload(run_id=None, dry_run=True, errors=list(plan.errors), stopped=plan.stopped,
                       source=plan.source, **plan.counts())


# The job (plan → approve → apply as one run) is lib/jobs/crm_sync.py; these names stay for callers.

def apply_crm_sync(engine: Engine, plan: CrmSyncPlan, **kwargs) -> dict:
    """Write a preview's proposals as one run; see lib.jobs.crm_sync.apply_crm_sync."""
    from lib.jobs.crm_sync import apply_crm_sync as apply

    return apply(engine, plan, **kwargs)


def run_crm_sync(engine: Engine, **kwargs) -> dict:
    """Plan, then (with `apply`) write; see lib.jobs.crm_sync.run_crm_sync."""
    from lib.jobs.crm_sync import run_crm_sync as run

    return run(engine, **kwargs)


# --- write-back to the CRM ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WriteBackProposal:
    """Fill one account's empty CVR field in the CRM with its Hub customer's CVR."""

    key: str
    account_id: str
    account_name: str
    customer_id: int
    customer_name: str
    cvr: str
    linked_by: str  # "stored link" or "this sync's link"


@dataclass
class WriteBackPlan:
    source: str
    cvr_field: str
    proposals: list[WriteBackProposal]
    errors: list[dict] = field(default_factory=list)


def write_back_enabled(settings: Settings | None = None) -> bool:
    return bool((settings or get_settings()).crm_write_back)


def _require_write_back(actor: Actor | None, apply: bool) -> None:
    if not write_back_enabled():
        raise ConfigError("writing to the CRM is off; set CRM_WRITE_BACK=true to allow filling the CRM's empty CVR "
                          "field from the Hub")
    if apply and actor is not None:
        require_role(actor.role, "operator", "write CVR numbers to the CRM")


def plan_crm_write_back(engine: Engine, client: VtigerClient, *, sync_plan: CrmSyncPlan | None = None,
                        planned_links: bool = True, on_progress: ProgressCallback | None = None) -> WriteBackPlan:
    """Accounts whose CVR field is empty while their linked Hub customer has a valid CVR; writes nothing.

    With `sync_plan` its accounts are reused (no second read) and, with `planned_links`, its confident new links
    count as links: the preview of a sync not applied yet.
    """
    _require_write_back(None, False)
    cvr_field = client.cvr_field()
    if not cvr_field:
        raise ConfigError(f"{client.label} has no Accounts field labelled CVR; set {client.name.upper()}_CVR_FIELD")
    accounts = sync_plan.accounts if sync_plan is not None else _read_all(client, on_progress)
    col = id_column(client.name)
    customers = _hub_customers(engine)
    linked: dict[str, tuple[dict, str]] = {str(c[col]): (c, "stored link") for c in customers if c[col]}
    if sync_plan is not None and planned_links:
        by_id = {c["id"]: c for c in customers}
        for p in sync_plan.proposals:
            if p.outcome in ("fill", "link") and p.store_link and p.customer_id in by_id:
                linked[p.account_id] = (by_id[p.customer_id], "this sync's link")
    held = {a.cvr for a in accounts if a.cvr}
    proposals: list[WriteBackProposal] = []
    errors: list[dict] = []
    for a in accounts:
        if a.cvr_raw or a.id not in linked:
            continue
        customer, how = linked[a.id]
        cvr = normalize_cvr(customer["cvr_number"])
        if not cvr:
            continue
        if cvr in held:
            errors.append({"account_id": a.id, "customer_id": customer["id"],
                           "message": f"{a.name}: another {client.label} account already holds CVR {cvr}; not written"})
            continue
        proposals.append(WriteBackProposal(f"{client.name}:{a.id}:write-back", a.id, a.name, customer["id"],
                                           customer["name"], cvr, how))
    return WriteBackPlan(client.name, cvr_field, proposals, errors)


def _read_all(client: VtigerClient, on_progress: ProgressCallback | None) -> list[CrmAccount]:
    accounts, _, stopped = _read_accounts(client, on_progress)
    if stopped:
        raise ServiceError(stopped)
    return accounts


def write_back_preview(plan: WriteBackPlan) -> dict:
    return job_payload(run_id=None, dry_run=True, errors=list(plan.errors), source=plan.source,
                       cvr_field=plan.cvr_field, proposed=len(plan.proposals), written=0, skipped=0)


def apply_crm_write_back(engine: Engine, client: VtigerClient, plan: WriteBackPlan, *, actor: Actor,
                         approved: Iterable[str] | None = None, on_progress: ProgressCallback | None = None) -> dict:
    """Write the CVRs into the CRM (revise on vTiger; retrieve + full update on Simply-CRM) as one run of kind
    `crm-write-back`; see lib.jobs.crm_sync.apply_crm_write_back."""
    from lib.jobs.crm_sync import apply_crm_write_back as write

    return write(engine, client, plan, actor=actor, approved=approved, on_progress=on_progress)
