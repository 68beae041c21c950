"""Customer validation, create/edit with audit, lock toggle, search and dashboard counts."""

from __future__ import annotations

import pytest

from lib.customers import (
    CustomerInvalid,
    create_customer,
    customer_history,
    dashboard_counts,
    get_customer,
    search_customers,
    set_subscriptions_locked,
    update_customer,
    validate_customer,
)
from lib.errors import NotAllowed
from lib.runs import list_runs, undo_run


@pytest.mark.parametrize(
    ("value", "message"),
    [("13585627", "modulus-11"), ("1234567", "8 digits"), ("1234567X", "8 digits"), ("01234567", "starting with 0")],
)
def test_bad_cvr_numbers_are_rejected_with_a_message(value, message):
    with pytest.raises(CustomerInvalid) as err:
        validate_customer({"name": "X", "cvr_number": value})
    assert message in err.value.errors["cvr_number"]


def test_cvr_is_normalised():
    assert validate_customer({"cvr_number": "DK 13 58 56 28"})["cvr_number"] == "13585628"


def test_create_edit_lock_and_history(engine):
    cid = create_customer(engine, {"name": "Nordlys Rådgivning ApS", "cvr_number": "13585628"}, user="ann")
    with pytest.raises(CustomerInvalid, match="already has CVR"):
        create_customer(engine, {"name": "Dublet", "cvr_number": "13585628"}, user="ann")
    update_customer(engine, cid, {"city": "Aarhus", "economic_customer_number": "1001"}, user="bob")
    set_subscriptions_locked(engine, cid, True, user="bob")
    stored = get_customer(engine, cid)
    assert stored["city"] == "Aarhus" and stored["economic_customer_number"] == 1001
    assert stored["subscriptions_locked"] is True
    history = customer_history(engine, cid)
    assert {(h["field"], h["changed_by"]) for h in history} >= {("city", "bob"), ("subscriptions_locked", "bob"),
                                                                ("*", "ann")}
    lock_run = next(r for r in list_runs(engine) if r["stats"].get("changed_fields") == ["subscriptions_locked"])
    undo_run(engine, lock_run["run_id"], user="ann")
    assert get_customer(engine, cid)["subscriptions_locked"] is False


def test_viewer_cannot_write(engine):
    with pytest.raises(NotAllowed, match="viewer"):
        create_customer(engine, {"name": "X"}, user="v", role="viewer")
    assert dashboard_counts(engine)["customers"] == 0


def test_search_by_name_cvr_and_number_with_pages(engine):
    for i in range(120):
        create_customer(engine, {"name": f"Firma {i:03d} ApS"}, user="seed")
    create_customer(engine, {"name": "Østergaard & Søn A/S", "cvr_number": "20756438",
                             "economic_customer_number": 1002}, user="seed")
    assert search_customers(engine, "østergaard").total == 1
    assert search_customers(engine, "DK 2075").rows[0]["name"] == "Østergaard & Søn A/S"
    assert search_customers(engine, "1002").rows[0]["cvr_number"] == "20756438"
    page = search_customers(engine, "firma", page=3, page_size=50)
    assert page.total == 120 and page.pages == 3 and len(page.rows) == 20
    counts = dashboard_counts(engine)
    assert counts["customers"] == 121 and counts["missing_cvr"] == 120 and counts["not_linked_economic"] == 120
    assert search_customers(engine, filter_name="missing_cvr").total == 120
