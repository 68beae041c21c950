"""Dashboard: the state of the register at a glance (each count opens its list), and the latest runs."""

import streamlit as st

from lib.customers import dashboard_counts
from lib.formatting import TIME_NOTE, number
from lib.runs import list_runs
from lib.subscriptions import data_version
from ui.session import hub_engine, page_actor
from ui.tables import runs_frame

CUSTOMERS_PAGE = "app_pages/customers.py"
# (count, label, the Customers page's "Show" filter it opens)
COUNTS = [("customers", "Customers", "all"), ("missing_cvr", "Missing CVR", "missing_cvr"),
          ("not_linked_economic", "Not linked to e-conomic", "not_linked_economic"),
          ("locked", "Subscriptions locked", "locked")]


@st.cache_data(max_entries=8, show_spinner=False)
def _counts(url: str, version: int) -> dict[str, int]:
    """Counted again only when the audit log has grown (`version`): every write to customers is audited."""
    return dashboard_counts(hub_engine())


def _open_customers(filter_name: str) -> None:
    st.session_state["customer_filter"] = filter_name  # the Customers page's "Show" box
    st.session_state["customer_search"] = ""
    st.session_state["_dashboard_open"] = CUSTOMERS_PAGE


me = page_actor()
engine = hub_engine()
if target := st.session_state.pop("_dashboard_open", None):
    st.switch_page(target)
st.title("BMC Hub")
counts = _counts(str(engine.url), data_version(engine))

cols = st.columns(len(COUNTS) + 1)
for col, (key, label, filter_name) in zip(cols, COUNTS, strict=False):
    col.metric(label, number(counts[key]))
    col.button("Show", key=f"dash_{key}", icon=":material/arrow_forward:", on_click=_open_customers,
               args=(filter_name,), disabled=not counts[key], help=f"Open Customers: {label.lower()}")
cols[-1].metric("Subscriptions", number(counts["subscriptions"]))
cols[-1].page_link("app_pages/subscriptions.py", label="Show", icon=":material/arrow_forward:")

if counts["customers"] == 0:
    st.info("The register is empty. Import customers' subscriptions, create customers on the Customers page, "
            "or load the demo data that matches the sandbox services (`python manage.py sandbox`).")
    try:
        from lib.demo_data import load_demo_data
    except ImportError:
        load_demo_data = None
    if load_demo_data is not None and me.can("operator") and st.button("Load demo data", type="primary"):
        result = load_demo_data(engine, user=me.email, role=me.role)
        st.session_state["demo_loaded"] = result.get("customers", 0)  # shown after the rerun, not lost in it
        st.rerun()
if "demo_loaded" in st.session_state:
    st.success(f"Loaded {number(st.session_state.pop('demo_loaded'))} demo customers.")

st.subheader("Recent runs")
runs = list_runs(engine, limit=10)
if runs:
    st.dataframe(runs_frame(runs), hide_index=True, width="stretch")
    st.caption(f"{TIME_NOTE} Every run, with its changes and undo, is on the Runs page.")
    st.page_link("app_pages/runs.py", label="Open Runs", icon=":material/history:")
else:
    st.caption("No runs yet. Every job and every edit is recorded here.")
