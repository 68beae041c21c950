"""Subscriptions across customers: filtered listing, totals per product and monthly recurring revenue (MRR).

MRR counts active subscriptions only: quantity × unit price divided by the months of the billing interval
(quarterly ÷ 3, half-yearly ÷ 6, yearly ÷ 12). A subscription without a unit price adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import text
from sqlalchemy.engine import Engine

from lib.db import fold_sql, like_contains
from lib.subscription_rows import MONTHS_PER_INTERVAL

STATUSES = ("active", "paused", "cancelled")
CENT = Decimal("0.01")
_MONTHS_SQL = "CASE s.billing_interval " + " ".join(
    f"WHEN '{name}' THEN {months}" for name, months in MONTHS_PER_INTERVAL.items()) + " ELSE 1 END"


MAX_QUERY_LENGTH = 200


@dataclass(frozen=True)
class SubscriptionFilter:
    """Which subscriptions to show; None means all. `customer` matches part of the customer's name."""

    customer_id: int | None = None
    product: str | None = None
    status: str | None = None
    customer: str | None = None

    def where(self, bind: Engine) -> tuple[str, dict]:
        clauses, params = [], {}
        if self.customer_id is not None:
            clauses.append("s.customer_id = :customer_id")
            params["customer_id"] = self.customer_id
        if self.customer:
            clauses.append(f"s.customer_id IN (SELECT id FROM customers WHERE {fold_sql(bind, 'name')} "
                           f"LIKE :customer ESCAPE '\\')")
            params["customer"] = like_contains(self.customer.strip().casefold()[:MAX_QUERY_LENGTH])
        if self.product:
            clauses.append("s.product = :product")
            params["product"] = self.product
        if self.status:
            clauses.append("s.status = :status")
            params["status"] = self.status
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), params


def monthly_amount(quantity: int | None, unit_price: Decimal | float | None, interval: str | None) -> Decimal:
    """One subscription's monthly revenue: quantity × unit price ÷ months per interval, in øre precision."""
    if unit_price is None or not quantity:
        return Decimal("0.00")
    months = MONTHS_PER_INTERVAL.get(interval or "monthly", 1)
    return (Decimal(quantity) * Decimal(str(unit_price)) / months).quantize(CENT, rounding=ROUND_HALF_UP)


def _money(value) -> Decimal:
    return Decimal(str(value or 0)).quantize(CENT, rounding=ROUND_HALF_UP)


def list_subscriptions(engine: Engine, filters: SubscriptionFilter | None = None, *, limit: int = 5000,
                       offset: int = 0) -> list[dict]:
    """Matching subscriptions with their customer's name and monthly amount, in the order they were added
    (the primary key: a page is read by index, not by sorting every match)."""
    where, params = (filters or SubscriptionFilter()).where(engine)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.id, s.customer_id, c.name AS customer, s.external_id, s.product, s.sku, s.quantity, "
            "s.unit_price, s.billing_interval, s.start_date, s.end_date, s.status, s.source, s.note "
            f"FROM subscriptions s JOIN customers c ON c.id = s.customer_id {where} "
            "ORDER BY s.id LIMIT :limit OFFSET :offset"),
            {**params, "limit": limit, "offset": offset}).mappings().all()
    out = []
    for r in rows:
        row = dict(r)
        row["unit_price"] = None if row["unit_price"] is None else _money(row["unit_price"])
        row["monthly"] = (monthly_amount(row["quantity"], row["unit_price"], row["billing_interval"])
                          if row["status"] == "active" else Decimal("0.00"))
        out.append(row)
    return out


def count_subscriptions(engine: Engine, filters: SubscriptionFilter | None = None) -> int:
    where, params = (filters or SubscriptionFilter()).where(engine)
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM subscriptions s {where}"), params).scalar_one())


def product_totals(engine: Engine, filters: SubscriptionFilter | None = None) -> list[dict]:
    """Per product: subscriptions, active ones, active quantity and MRR; highest MRR first."""
    where, params = (filters or SubscriptionFilter()).where(engine)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT s.product, count(*) AS subscriptions, "
            "sum(CASE WHEN s.status = 'active' THEN 1 ELSE 0 END) AS active, "
            "sum(CASE WHEN s.status = 'active' THEN s.quantity ELSE 0 END) AS quantity, "
            "sum(CASE WHEN s.status = 'active' AND s.unit_price IS NOT NULL "
            f"THEN s.quantity * s.unit_price * 1.0 / {_MONTHS_SQL} ELSE 0 END) AS mrr "
            f"FROM subscriptions s {where} GROUP BY s.product"), params).mappings().all()
    totals = [{"product": r["product"], "subscriptions": int(r["subscriptions"]), "active": int(r["active"] or 0),
               "quantity": int(r["quantity"] or 0), "mrr": _money(r["mrr"])} for r in rows]
    return sorted(totals, key=lambda t: (-t["mrr"], t["product"]))


def total_mrr(totals: list[dict]) -> Decimal:
    return sum((t["mrr"] for t in totals), Decimal("0.00"))


def filter_options(engine: Engine) -> dict[str, list]:
    """The products and the statuses, for the filter widgets (customers are searched by name instead)."""
    with engine.connect() as conn:
        products = conn.execute(text("SELECT DISTINCT product FROM subscriptions ORDER BY product")).scalars().all()
    return {"products": list(products), "statuses": list(STATUSES)}


def data_version(engine: Engine) -> int:
    """Grows with every audited write (the audit log's newest id): a cache key that is cheap to read."""
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM changes")).scalar_one())
