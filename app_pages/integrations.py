"""Settings → Integrations: which outside services are configured, and a connection test for each."""

import streamlit as st

from lib.integrations import integration_status, test_connection
from ui.session import page_actor

page_actor("admin")
st.title("Integrations")
st.caption("Settings come from the environment, `.env` or `.streamlit/secrets.toml`. Secrets are masked.")

for status in integration_status():
    with st.container(border=True):
        st.subheader(status.label)
        if status.configured:
            st.markdown(":green[Configured]")
        else:
            st.markdown(f":orange[Not configured] — missing {', '.join(status.missing)}")
        st.table({"setting": list(status.settings), "value": [v or "—" for v in status.settings.values()]})
        if st.button("Test connection", key=f"test_{status.service}"):
            with st.spinner(f"Calling {status.label}…"):
                ok, message = test_connection(status.service)
            (st.success if ok else st.error)(message)
