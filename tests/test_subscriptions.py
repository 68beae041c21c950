"""lib/subscriptions: monthly amounts, totals per product and filters, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

from lib.subscription_import import import_subscriptions
from lib.subscriptions import (
    SubscriptionFilter,
    count_subscriptions,
    filter_options,
    list_subscriptions,
    monthly_amount,
    product_totals,
    total_mrr,
)
from tests.test_excel_reader import sample
from tests.test_subscription_import import seed_sample_customers


def test_monthly_amount_by_interval():
    assert monthly_amount(12, Decimal("89.50"), "monthly") == Decimal("1074.00")
    assert monthly_amount(2, Decimal("1250"), "quarterly") == Decimal("833.33")
    assert monthly_amount(1, Decimal("600"), "half-yearly") == Decimal("100.00")
    assert monthly_amount(3, Decimal("120"), "yearly") == Decimal("30.00")
    assert monthly_amount(3, None, "yearly") == Decimal("0.00")


def test_totals_and_filters(engine):
    ids = seed_sample_customers(engine)
    import_subscriptions(engine, sample("abonnementer-clean.xlsx"), apply=True, user="seed", role="admin")
    totals = product_totals(engine)
    assert total_mrr(totals) == Decimal("2056.33")  # the cancelled yearly subscription adds nothing
    firewall = next(t for t in totals if t["product"] == "Firewall managed")
    assert firewall == {"product": "Firewall managed", "subscriptions": 1, "active": 1, "quantity": 2,
                        "mrr": Decimal("833.33")}
    assert totals[0]["product"] == "Microsoft 365 Business Standard"  # highest MRR first
    only = SubscriptionFilter(customer_id=ids[1001])
    assert count_subscriptions(engine, only) == 2
    assert {r["product"] for r in list_subscriptions(engine, only)} == {"Microsoft 365 Business Standard",
                                                                         "Backup 100 GB"}
    cancelled = list_subscriptions(engine, SubscriptionFilter(status="cancelled"))
    assert [r["customer"] for r in cancelled] == ["Blåbær IT I/S"] and cancelled[0]["monthly"] == Decimal("0.00")
    options = filter_options(engine)
    assert "Backup 100 GB" in options["products"] and "customers" not in options
    assert count_subscriptions(engine, SubscriptionFilter(customer="østergaard")) == 1
    assert count_subscriptions(engine, SubscriptionFilter(customer="%")) == 0   # literal, not a wildcard
    assert count_subscriptions(engine, SubscriptionFilter(customer="_")) == 0
    page_one = list_subscriptions(engine, limit=2)
    page_two = list_subscriptions(engine, limit=2, offset=2)
    assert len(page_one) == 2 and {r["id"] for r in page_one}.isdisjoint({r["id"] for r in page_two})
