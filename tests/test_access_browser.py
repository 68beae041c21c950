"""In Chromium: a page's URL cannot skip the router's sign-in check."""

from __future__ import annotations

import pytest

from tests.browser import browser_page, streamlit_server  # noqa: F401 - fixtures


@pytest.mark.parametrize("path", ["customers", "integrations"])
def test_direct_url_is_refused_when_login_is_required(db_url, monkeypatch, streamlit_server, browser_page,  # noqa: F811
                                                     path):
    monkeypatch.setenv("REQUIRE_LOGIN", "true")
    page = browser_page(streamlit_server(), path)
    page.get_by_text("REQUIRE_LOGIN is true but sign-in is not configured").wait_for()
    assert page.get_by_placeholder("Name, CVR or e-conomic number").count() == 0
    assert page.get_by_text("Test connection").count() == 0
