"""Sessions (admin): who signed in recently, with which role, and revoking a person's sessions."""

import streamlit as st

from lib.errors import HubError
from lib.sessions import list_sign_ins, revoke_sessions
from ui.session import hub_engine, page_actor

me = page_actor("admin")
engine = hub_engine()
st.title("Sessions")
st.caption("Everyone who signed in, most recently seen first. Revoking ends every session the person has now, "
           "in every browser and on every server: they must sign in again. Signing out does the same for "
           "oneself.")

days = st.selectbox("Seen within", [1, 7, 30, 365], index=2, format_func=lambda d: f"{d} day(s)",
                    key="sessions_days")
people = list_sign_ins(engine, days=days)
if not people:
    st.info("Nobody signed in within that time.")
    st.stop()
st.dataframe(
    [{"person": p["person"], "role": p["role"], "provider": p["provider"], "first seen": p["first_seen_at"],
      "last seen": p["last_seen_at"], "sessions ended": p["not_before"], "ended how": p["ended_how"],
      "ended by": p["ended_by"]} for p in people],
    hide_index=True, width="stretch",
)

st.subheader("Revoke sessions")
person = st.selectbox("Person", [p["person"] for p in people], key="sessions_person")
if st.button("Revoke this person's sessions", type="primary", key="sessions_revoke"):
    try:
        when = revoke_sessions(engine, person, me)
    except HubError as exc:
        st.error(str(exc))
    else:
        st.success(f"Every session {person} had before {when:%Y-%m-%d %H:%M:%S} UTC is refused from now on.")
