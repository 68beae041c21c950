"""Subscriptions: every customer's subscriptions with filters, totals per product and monthly recurring revenue."""

import pandas as pd
import streamlit as st

from lib.subscriptions import (
    SubscriptionFilter,
    count_subscriptions,
    filter_options,
    list_subscriptions,
    product_totals,
    total_mrr,
)
from ui.session import hub_engine, page_actor

SHOWN_ROWS = 5000
ALL = "All"

page_actor()
engine = hub_engine()
st.title("Subscriptions")
st.caption("Monthly recurring revenue (MRR) counts active subscriptions: quantity × unit price, divided by 3 for "
           "quarterly, 6 for half-yearly and 12 for yearly billing.")

options = filter_options(engine)
customer_names = dict(options["customers"])
left, middle, right = st.columns([3, 2, 1])
customer = left.selectbox("Customer", [None, *customer_names], key="subs_customer",
                          format_func=lambda c: ALL if c is None else customer_names[c])
product = middle.selectbox("Product", [None, *options["products"]], key="subs_product",
                           format_func=lambda p: ALL if p is None else p)
status = right.selectbox("Status", [None, *options["statuses"]], key="subs_status",
                         format_func=lambda s: ALL if s is None else s)
filters = SubscriptionFilter(customer_id=customer, product=product, status=status)

totals = product_totals(engine, filters)
if not totals:
    st.info("No subscriptions match." if any((customer, product, status)) else
            "No subscriptions yet: import a BMC Office export on the Import subscriptions page.")
    st.stop()

mrr = total_mrr(totals)
cols = st.columns(3)
cols[0].metric("Subscriptions", f"{sum(t['subscriptions'] for t in totals):,}".replace(",", "."))
cols[1].metric("Active", f"{sum(t['active'] for t in totals):,}".replace(",", "."))
cols[2].metric("MRR (DKK)", f"{mrr:,.2f}".replace(",", "X").replace(".", ",").replace("X", "."))

st.subheader("Per product")
frame = pd.DataFrame([{**t, "mrr": float(t["mrr"])} for t in totals])
st.bar_chart(frame, x="product", y="mrr", x_label="product", y_label="MRR (DKK)", horizontal=True)
st.dataframe(frame.rename(columns={"mrr": "MRR (DKK)"}), hide_index=True, width="stretch")

st.subheader("Subscriptions")
rows = list_subscriptions(engine, filters, limit=SHOWN_ROWS)
total = count_subscriptions(engine, filters)
st.dataframe(pd.DataFrame([{**r, "unit_price": None if r["unit_price"] is None else float(r["unit_price"]),
                            "monthly": float(r["monthly"])} for r in rows]),
             hide_index=True, width="stretch")
if total > len(rows):
    st.caption(f"First {len(rows):,} of {total:,} shown; narrow the filters to see the rest.")
