"""Customers: search the register, open one, edit it, lock its subscriptions, see its history."""

import pandas as pd
import streamlit as st

from lib.customers import (
    FIELD_LIMITS,
    FILTERS,
    SEARCH_LIMIT,
    STALE,
    CustomerChanged,
    CustomerInvalid,
    CustomerPage,
    create_customer,
    customer_history,
    customer_subscriptions,
    get_customer,
    same_value,
    search_customers,
    set_subscriptions_locked,
    update_customer,
)
from lib.errors import HubError
from lib.formatting import number
from lib.text_input import TextRefused
from ui.cvr_widgets import customer_cvr_lookup
from ui.session import hub_engine, page_actor
from ui.tables import changes_frame

PAGE_SIZE = 50
FILTER_LABELS = {"all": "All customers", "missing_cvr": "Missing CVR", "not_linked_economic": "Not linked to e-conomic",
                 "locked": "Subscriptions locked"}
FIELDS = [("name", "Name"), ("cvr_number", "CVR number"), ("economic_customer_number", "e-conomic customer no."),
          ("vtiger_account_id", "vTiger account id"), ("simplycrm_account_id", "Simply-CRM account id"),
          ("email", "E-mail"), ("phone", "Phone"), ("address", "Address"), ("zip", "Zip"), ("city", "City")]

FIELD_LABELS = dict(FIELDS)

me = page_actor()
engine = hub_engine()
may_edit = me.can("operator")
st.title("Customers")
if not may_edit:
    st.caption(f"Read-only: your role is {me.role}; editing customers needs the operator role.")


def _shown(value) -> str:
    return "" if value is None else str(value)


def _forget_form(cid: int) -> None:
    """Drop a record's form state, so it opens again with the stored values."""
    for key in [f"opened_{cid}", *(f"e_{cid}_{field}" for field, _ in FIELDS)]:
        st.session_state.pop(key, None)


def _field_errors(exc: CustomerInvalid) -> list[str]:
    return [f"{FIELD_LABELS.get(field, field)}: {problem}" for field, problem in exc.errors.items()]


def _save(cid: int) -> None:
    """Form callback: write only what the person changed, and only onto the values the form showed."""
    opened = st.session_state[f"opened_{cid}"]
    changed = {field: st.session_state[f"e_{cid}_{field}"] for field, _ in FIELDS
               if st.session_state[f"e_{cid}_{field}"] != _shown(opened[field])}
    if not changed:
        st.session_state["customer_message"] = ("ok", "Nothing changed.")
        return
    try:
        written = update_customer(engine, cid, changed, user=me.email, role=me.role, expected=opened)
    except CustomerChanged as exc:
        st.session_state["customer_form_errors"] = (cid, [
            f"Not saved: this customer was {STALE} (changed meanwhile: "
            f"{', '.join(FIELD_LABELS.get(f, f) for f in exc.fields)}). Your entries are still in the form."])
        return
    except CustomerInvalid as exc:
        st.session_state["customer_form_errors"] = (cid, _field_errors(exc))
        return
    except HubError as exc:
        st.session_state["customer_form_errors"] = (cid, [str(exc)])
        return
    _forget_form(cid)
    st.session_state["customer_message"] = (
        "ok", f"Saved: {', '.join(sorted(written))}." if written else "Nothing changed.")


def _create() -> None:
    """Form callback: create, then open the new customer (the search shows it)."""
    values = {field: st.session_state.get(f"n_{field}", "") for field, _ in FIELDS}
    try:
        new_id = create_customer(engine, values, user=me.email, role=me.role)
    except CustomerInvalid as exc:
        st.session_state["customer_new_errors"] = _field_errors(exc)
        return
    except HubError as exc:
        st.session_state["customer_new_errors"] = [str(exc)]
        return
    for field, _ in FIELDS:
        st.session_state.pop(f"n_{field}", None)
    created = get_customer(engine, new_id)
    st.session_state["customer_search"] = created["name"] if created else ""
    st.session_state["customer_filter"] = "all"
    st.session_state["customer_page"] = 1
    st.session_state["customer_pick"] = new_id
    st.session_state["customer_extra"] = (new_id, st.session_state["customer_search"])
    st.session_state["customer_message"] = ("ok", f"Created customer {new_id}; it is open below.")


left, middle, right = st.columns([3, 2, 1])
query = left.text_input("Search", key="customer_search", placeholder="Name, CVR or e-conomic number",
                        max_chars=SEARCH_LIMIT)
filter_name = middle.selectbox("Show", list(FILTERS), format_func=FILTER_LABELS.get, key="customer_filter")
page_no = right.number_input("Page", min_value=1, value=1, step=1, key="customer_page")
try:
    result = search_customers(engine, query, filter_name=filter_name, page=int(page_no), page_size=PAGE_SIZE)
    if page_no > result.pages:
        result = search_customers(engine, query, filter_name=filter_name, page=result.pages, page_size=PAGE_SIZE)
except TextRefused as exc:
    st.error(f"Search not run: {exc}.")
    result = CustomerPage([], 0, 1, PAGE_SIZE)
st.caption(f"{number(result.total)} customers · page {number(result.page)} of {number(result.pages)}")

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


def _edit_form(customer: dict) -> None:
    """The edit form of one record: widget keys carry its id, the values it opened with are kept."""
    cid = customer["id"]
    if st.session_state.get("customer_form_open") != cid:  # another record: its form starts fresh
        previous = st.session_state.get("customer_form_open")
        if previous is not None:
            _forget_form(previous)
        st.session_state["customer_form_open"] = cid
    opened = st.session_state.setdefault(f"opened_{cid}", {field: customer[field] for field, _ in FIELDS})
    meanwhile = [FIELD_LABELS[f] for f, _ in FIELDS if not same_value(customer[f], opened[f])]
    if meanwhile:
        st.warning(f"This customer was changed since you opened it ({', '.join(meanwhile)}). "
                   "Reload to see the stored values; saving now is refused.")
        st.button("Reload", key=f"reload_{cid}", on_click=_forget_form, args=(cid,))
    with st.form(f"edit_{cid}"):
        for field, label in FIELDS:
            shown = _shown(opened[field])
            # the value goes in through session state (not value=), so a reload reaches the browser too
            st.session_state.setdefault(f"e_{cid}_{field}", shown)
            st.text_input(label, key=f"e_{cid}_{field}", max_chars=max(FIELD_LIMITS.get(field, 0), len(shown)) or None)
        st.form_submit_button("Save changes", key="save_customer", on_click=_save, args=(cid,))
    errors = st.session_state.get("customer_form_errors")
    if errors and errors[0] == cid:
        for line in errors[1]:
            st.error(line)
        st.session_state.pop("customer_form_errors", None)


def _read_only_details(customer: dict) -> None:
    st.dataframe(pd.DataFrame([{"field": label, "value": _shown(customer[field])} for field, label in FIELDS]),
                 hide_index=True, width="stretch")


# a customer just created stays in the list while the search is the one its creation set
extra, created_for = st.session_state.get("customer_extra") or (None, None)
if extra is not None and (created_for != query or filter_name != "all"):
    st.session_state.pop("customer_extra", None)
    extra = None
if result.rows or extra is not None:
    options = [r["id"] for r in result.rows]
    labels = {r["id"]: f"{r['name']} ({r['cvr_number'] or 'no CVR'})" for r in result.rows}
    if extra is not None and extra not in options and (found := get_customer(engine, extra)):
        options.insert(0, extra)
        labels[extra] = f"{found['name']} ({found['cvr_number'] or 'no CVR'})"
    picked = st.selectbox("Open customer", options, format_func=labels.get, key="customer_pick")
    customer = get_customer(engine, picked) if picked is not None else None
    if customer:
        st.subheader(customer["name"])
        if may_edit:
            st.session_state[f"lock_{picked}"] = customer["subscriptions_locked"]  # always the stored state
            st.toggle("Subscriptions locked", key=f"lock_{picked}", on_change=_toggle_lock, args=(picked,),
                      help="A locked customer's subscriptions are frozen: imports skip them.")
            if f"cvr_one_note_{picked}" in st.session_state:  # the CVR lookup just saved a number here
                _forget_form(picked)
            customer_cvr_lookup(engine, customer, me)
        else:
            st.caption("Subscriptions locked: imports leave them as they are." if customer["subscriptions_locked"]
                       else "Subscriptions not locked.")
        details, subscriptions, history = st.tabs(["Details", "Subscriptions", "History"])
        with details:
            if may_edit:
                _edit_form(customer)
            else:
                _read_only_details(customer)
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

if may_edit:
    with st.expander("New customer"):
        with st.form("new_customer"):
            for field, label in FIELDS:
                st.text_input(label, key=f"n_{field}", max_chars=FIELD_LIMITS.get(field))
            st.form_submit_button("Create customer", key="create_customer", on_click=_create)
        for line in st.session_state.pop("customer_new_errors", []):
            st.error(line)
