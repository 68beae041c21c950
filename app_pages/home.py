"""Dashboard: the state of the register at a glance, and the latest runs."""

import streamlit as st

from lib.customers import dashboard_counts
from lib.runs import list_runs
from ui.session import hub_engine, page_actor
from ui.tables import runs_frame

me = page_actor()
engine = hub_engine()
st.title("BMC Hub")
counts = dashboard_counts(engine)

cols = st.columns(5)
cols[0].metric("Customers", f"{counts['customers']:,}".replace(",", "."))
cols[1].metric("Missing CVR", counts["missing_cvr"])
cols[2].metric("Not linked to e-conomic", counts["not_linked_economic"])
cols[3].metric("Subscriptions locked", counts["locked"])
cols[4].metric("Subscriptions", counts["subscriptions"])

if counts["customers"] == 0:
    st.info("The register is empty. Import customers' subscriptions, create customers on the Customers page, "
            "or load the demo data that matches the sandbox services (`python manage.py sandbox`).")
    try:
        from lib.demo_data import load_demo_data
    except ImportError:
        load_demo_data = None
    if load_demo_data is not None and me.can("operator") and st.button("Load demo data", type="primary"):
        result = load_demo_data(engine, user=me.email, role=me.role)
        st.success(f"Loaded {result.get('customers', 0)} demo customers.")
        st.rerun()

st.subheader("Recent runs")
runs = list_runs(engine, limit=10)
if runs:
    st.dataframe(runs_frame(runs), hide_index=True, width="stretch")
else:
    st.caption("No runs yet. Every job and every edit is recorded here.")
