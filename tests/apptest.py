"""Helpers for streamlit.testing AppTest runs of the real pages."""

from __future__ import annotations

import time

from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT


def app(page: str = "Home.py", user: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    if user is not None:
        at.user = user
    return at


def signed_in(email: str, *, verified: bool | None = True, issued: float | None = None) -> dict:
    """st.user as Streamlit fills it from an ID token: e-mail, email_verified (left out when None), iat."""
    user = {"email": email, "is_logged_in": True, "provider": "default", "iat": int(issued or time.time())}
    if verified is not None:
        user["email_verified"] = verified
    return user


def no_exception(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """All visible text of markdown, captions, alerts and metrics, for 'is it shown' checks."""
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [f"{m.label}={m.value}" for m in at.metric]
    parts += [t.value for t in at.title] + [h.value for h in at.subheader]
    return "\n".join(str(p) for p in parts)
