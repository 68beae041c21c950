"""Subscriptions: every customer's subscriptions with filters, totals per product and monthly recurring revenue."""

import pandas as pd
import streamlit as st

from lib.formatting import money, number, when
from lib.subscriptions import (
    SubscriptionFilter,
    count_subscriptions,
    data_version,
    filter_options,
    list_subscriptions,
    product_totals,
    total_mrr,
)
from ui.session import hub_engine, page_actor, still_signed_in

PAGE_SIZE = 100
ALL = "All"


@st.cache_data(max_entries=64, show_spinner=False)
def _totals(url: str, version: int, filters: SubscriptionFilter) -> tuple[list[dict], int]:
    """Per-product totals and the match count; recomputed only when the data changed (`version`)."""
    engine = hub_engine()
    return product_totals(engine, filters), count_subscriptions(engine, filters)


@st.cache_data(max_entries=4, show_spinner=False)
def _options(url: str, version: int) -> dict:
    return filter_options(hub_engine())


page_actor()
engine = hub_engine()
version = data_version(engine)
st.title("Subscriptions")
st.caption("Monthly recurring revenue (MRR) counts active subscriptions: quantity × unit price, divided by 3 for "
           "quarterly, 6 for half-yearly and 12 for yearly billing. Amounts in kroner (kr.).")

options = _options(str(engine.url), version)
left, middle, right = st.columns([3, 2, 1])
customer = left.text_input("Customer", key="subs_customer", max_chars=200, placeholder="Part of the name")
product = middle.selectbox("Product", [None, *options["products"]], key="subs_product",
                           format_func=lambda p: ALL if p is None else p)
status = right.selectbox("Status", [None, *options["statuses"]], key="subs_status",
                         format_func=lambda s: ALL if s is None else s)
filters = SubscriptionFilter(customer=customer.strip() or None, product=product, status=status)

totals, total = _totals(str(engine.url), version, filters)
if not totals:
    st.info("No subscriptions match." if any((customer, product, status)) else
            "No subscriptions yet: import a BMC Office export on the Import subscriptions page.")
    st.stop()

cols = st.columns(3)
cols[0].metric("Subscriptions", number(sum(t["subscriptions"] for t in totals)))
cols[1].metric("Active", number(sum(t["active"] for t in totals)))
cols[2].metric("MRR", money(total_mrr(totals)))

st.subheader("Per product")
frame = pd.DataFrame([{"product": t["product"], "subscriptions": number(t["subscriptions"]),
                       "active": number(t["active"]), "quantity": number(t["quantity"]), "MRR": money(t["mrr"]),
                       "mrr": float(t["mrr"])} for t in totals])
st.bar_chart(frame, x="product", y="mrr", x_label="product", y_label="MRR (kr.)", horizontal=True)
st.dataframe(frame.drop(columns=["mrr"]), hide_index=True, width="stretch")


@st.fragment
def subscription_rows() -> None:
    """The list, a page at a time: paging reruns only this part."""
    still_signed_in()
    st.subheader("Subscriptions")
    pages = max(1, -(-total // PAGE_SIZE))
    page = st.number_input(f"Page (of {number(pages)})", min_value=1, max_value=pages, value=1, step=1,
                           key=f"subs_page_{hash(filters)}")
    rows = list_subscriptions(engine, filters, limit=PAGE_SIZE, offset=(int(page) - 1) * PAGE_SIZE)
    st.dataframe(pd.DataFrame([{
        "customer": r["customer"], "product": r["product"], "SKU": r["sku"] or "", "quantity": number(r["quantity"]),
        "unit price": money(r["unit_price"]), "interval": r["billing_interval"], "start": when(r["start_date"]),
        "end": when(r["end_date"]), "status": r["status"], "monthly": money(r["monthly"]),
        "subscription id": r["external_id"] or "", "note": r["note"] or "",
    } for r in rows]), hide_index=True, width="stretch")
    first = (int(page) - 1) * PAGE_SIZE + 1
    st.caption(f"{number(first)}–{number(first + len(rows) - 1)} of {number(total)}")


subscription_rows()
