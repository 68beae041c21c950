"""Two Streamlit replicas against one PostgreSQL database, as behind a load balancer."""

from __future__ import annotations

import urllib.request

import pytest

from lib.customers import create_customer, get_customer
from tests.browser import browser_page, streamlit_server, wait_idle  # noqa: F401 - fixtures


def open_customer(page, name: str) -> None:
    page.get_by_role("textbox", name="Search").fill(name)
    page.get_by_role("textbox", name="Search").press("Enter")
    wait_idle(page)
    page.get_by_text("1 customers").wait_for()


def edit_city(page, city: str) -> None:
    page.get_by_role("textbox", name="City").first.fill(city)
    page.get_by_role("button", name="Save changes").click()
    wait_idle(page)
    page.get_by_text("Saved: city.").wait_for()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_an_edit_through_one_replica_is_seen_through_the_other(engine, streamlit_server, browser_page):  # noqa: F811
    customer = create_customer(engine, {"name": "Replika Data ApS", "cvr_number": "13585628"}, user="seed")
    replica_a, replica_b = streamlit_server(), streamlit_server()
    assert replica_a != replica_b
    for base in (replica_a, replica_b):
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as response:
            assert response.read().strip() == b"ok"

    page_a = browser_page(replica_a, "customers")
    open_customer(page_a, "Replika")
    edit_city(page_a, "Odense")
    assert get_customer(engine, customer)["city"] == "Odense"

    page_b = browser_page(replica_b, "customers")
    open_customer(page_b, "Replika")
    assert page_b.get_by_role("textbox", name="City").first.input_value() == "Odense"

    edit_city(page_b, "Vejle")  # and back: replica A sees B's edit on its next run
    page_a.reload()
    page_a.get_by_test_id("stApp").wait_for()
    wait_idle(page_a)
    open_customer(page_a, "Replika")
    assert page_a.get_by_role("textbox", name="City").first.input_value() == "Vejle"
    assert get_customer(engine, customer)["city"] == "Vejle"
