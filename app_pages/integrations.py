"""Settings → Integrations: which outside services are configured, and a connection test for each."""

from datetime import datetime

import streamlit as st

from lib.integrations import integration_status, test_connection
from ui.session import page_actor

page_actor("admin")
st.title("Integrations")
st.caption("Settings come from the environment, `.env` or `.streamlit/secrets.toml`. Secrets are masked. "
           "A connection test never retries or waits, and the cvrapi.dk test spends none of the daily lookups.")

statuses = integration_status()
results: dict[str, tuple[bool, str, str]] = st.session_state.setdefault("integration_results", {})


def run_test(service: str, label: str) -> None:
    with st.spinner(f"Calling {label}…"):
        ok, message = test_connection(service)
    results[service] = (ok, message, datetime.now().strftime("%H:%M:%S"))


if st.button("Test all configured", key="test_all"):
    for status in statuses:
        if status.configured:
            run_test(status.service, status.label)

for status in statuses:
    with st.container(border=True):
        st.subheader(status.label)
        if status.configured:
            st.markdown(":green[Configured]")
        else:
            st.markdown(f":orange[Not configured] — missing {', '.join(status.missing)}")
        st.table({"setting": list(status.settings), "value": [v or "—" for v in status.settings.values()]})
        if st.button("Test connection", key=f"test_{status.service}"):
            run_test(status.service, status.label)
        if status.service in results:  # every service keeps its last result, not only the last one clicked
            ok, message, at = results[status.service]
            (st.success if ok else st.error)(f"{message} (tested {at})")
