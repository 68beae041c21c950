"""Customers: search the register, open one, edit it, lock its subscriptions, see its history."""

import pandas as pd
import streamlit as st

from lib.customers import (
    FILTERS,
    CustomerInvalid,
    create_customer,
    customer_history,
    customer_subscriptions,
    get_customer,
    search_customers,
    set_subscriptions_locked,
    update_customer,
)
from lib.errors import HubError
from ui.cvr_widgets import customer_cvr_lookup
from ui.session import hub_engine, page_actor
from ui.tables import changes_frame

PAGE_SIZE = 50
FILTER_LABELS = {"all": "All customers", "missing_cvr": "Missing CVR", "not_linked_economic": "Not linked to e-conomic",
                 "locked": "Subscriptions locked"}
FIELDS = [("name", "Name"), ("cvr_number", "CVR number"), ("economic_customer_number", "e-conomic customer no."),
          ("vtiger_account_id", "vTiger account id"), ("simplycrm_account_id", "Simply-CRM account id"),
          ("email", "E-mail"), ("phone", "Phone"), ("address", "Address"), ("zip", "Zip"), ("city", "City")]

me = page_actor()
engine = hub_engine()
st.title("Customers")
if not me.can("operator"):
    st.caption(f"Read-only: your role is {me.role}; editing customers needs the operator role.")

left, middle, right = st.columns([3, 2, 1])
query = left.text_input("Search", key="customer_search", placeholder="Name, CVR or e-conomic number")
filter_name = middle.selectbox("Show", list(FILTERS), format_func=FILTER_LABELS.get, key="customer_filter")
page_no = right.number_input("Page", min_value=1, value=1, step=1, key="customer_page")
result = search_customers(engine, query, filter_name=filter_name, page=int(page_no), page_size=PAGE_SIZE)
if page_no > result.pages:
    result = search_customers(engine, query, filter_name=filter_name, page=result.pages, page_size=PAGE_SIZE)
st.caption(f"{result.total:,} customers · page {result.page} of {result.pages}".replace(",", "."))

if result.rows:
    st.dataframe(
        pd.DataFrame([{
            "id": r["id"], "name": r["name"], "CVR": r["cvr_number"], "e-conomic no.": r["economic_customer_number"],
            "city": r["city"], "locked": r["subscriptions_locked"],
        } for r in result.rows]),
        hide_index=True, width="stretch",
    )
else:
    st.info("No customer matches the search.")

message = st.session_state.pop("customer_message", None)
if message:
    (st.error if message[0] == "error" else st.success)(message[1])


def _toggle_lock(customer_id: int) -> None:
    locked = st.session_state[f"lock_{customer_id}"]
    try:
        set_subscriptions_locked(engine, customer_id, locked, user=me.email, role=me.role)
        st.session_state["customer_message"] = ("ok", "Subscriptions locked." if locked else "Subscriptions unlocked.")
    except HubError as exc:
        st.session_state[f"lock_{customer_id}"] = not locked
        st.session_state["customer_message"] = ("error", str(exc))


if result.rows:
    options = [r["id"] for r in result.rows]
    labels = {r["id"]: f"{r['name']} ({r['cvr_number'] or 'no CVR'})" for r in result.rows}
    picked = st.selectbox("Open customer", options, format_func=labels.get, key="customer_pick")
    customer = get_customer(engine, picked)
    if customer:
        st.subheader(customer["name"])
        st.toggle("Subscriptions locked", value=customer["subscriptions_locked"], key=f"lock_{picked}",
                  on_change=_toggle_lock, args=(picked,),
                  help="A locked customer's subscriptions are frozen: imports skip them.")
        customer_cvr_lookup(engine, customer, me)
        details, subscriptions, history = st.tabs(["Details", "Subscriptions", "History"])
        with details, st.form(f"edit_{picked}"):
            values = {}
            for field, label in FIELDS:
                current = customer[field]
                values[field] = st.text_input(label, value="" if current is None else str(current), key=f"e_{field}")
            if st.form_submit_button("Save changes", key="save_customer"):
                try:
                    changed = update_customer(engine, picked, values, user=me.email, role=me.role)
                    st.session_state["customer_message"] = (
                        "ok", f"Saved: {', '.join(sorted(changed))}." if changed else "Nothing changed.")
                    st.rerun()
                except CustomerInvalid as exc:
                    for field, problem in exc.errors.items():
                        st.error(f"{dict(FIELDS).get(field, field)}: {problem}")
                except HubError as exc:
                    st.error(str(exc))
        with subscriptions:
            subs = customer_subscriptions(engine, picked)
            if customer["subscriptions_locked"]:
                st.info("Subscriptions are locked: shown read-only, imports leave them as they are.")
            if subs:
                st.dataframe(pd.DataFrame(subs), hide_index=True, width="stretch")
            else:
                st.caption("No subscriptions.")
        with history:
            changes = customer_history(engine, picked)
            if changes:
                st.dataframe(changes_frame(changes, of="row"), hide_index=True, width="stretch")
            else:
                st.caption("No recorded changes.")

if me.can("operator"):
    with st.expander("New customer"), st.form("new_customer", clear_on_submit=False):
        new_values = {field: st.text_input(label, key=f"n_{field}") for field, label in FIELDS}
        if st.form_submit_button("Create customer", key="create_customer"):
            try:
                new_id = create_customer(engine, new_values, user=me.email, role=me.role)
                st.session_state["customer_message"] = ("ok", f"Created customer {new_id}.")
                st.rerun()
            except CustomerInvalid as exc:
                for field, problem in exc.errors.items():
                    st.error(f"{dict(FIELDS).get(field, field)}: {problem}")
