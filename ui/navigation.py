"""Builds the navigation: core pages the actor's role may use, plus enabled modules' pages."""

from __future__ import annotations

import streamlit as st

from lib.config import PROJECT_ROOT
from lib.jobs.registry import core_jobs
from lib.roles import Actor

# (section, file, title, icon, role needed, default page)
CORE_PAGES = [
    ("Overview", "app_pages/home.py", "Dashboard", ":material/dashboard:", "viewer", True),
    ("Overview", "app_pages/customers.py", "Customers", ":material/groups:", "viewer", False),
    ("Overview", "app_pages/subscriptions.py", "Subscriptions", ":material/receipt_long:", "viewer", False),
    ("Overview", "app_pages/runs.py", "Runs", ":material/history:", "viewer", False),
    # the Jobs section: one page per core job, from the job registry (lib/jobs/registry.py)
    *[("Jobs", job.page, job.title, job.icon, job.required_role, False) for job in core_jobs() if job.page],
    ("Settings", "app_pages/integrations.py", "Integrations", ":material/cable:", "admin", False),
    ("Settings", "app_pages/modules.py", "Modules", ":material/extension:", "admin", False),
    ("Settings", "app_pages/sessions.py", "Sessions", ":material/badge:", "admin", False),
]


def core_pages(actor: Actor) -> dict[str, list[st.Page]]:
    sections: dict[str, list[st.Page]] = {}
    for section, file, title, icon, needed, default in CORE_PAGES:
        if not (PROJECT_ROOT / file).is_file() or not actor.can(needed):
            continue
        sections.setdefault(section, []).append(st.Page(file, title=title, icon=icon, default=default))
    return sections


def module_pages(actor: Actor) -> list[st.Page]:
    """Enabled, healthy modules' pages; the module system failing never takes the core app down."""
    try:
        from ui.module_pages import module_navigation_pages
    except ImportError:
        return []
    try:
        return list(module_navigation_pages(actor.role))
    except Exception as exc:  # noqa: BLE001 - isolation: show it, keep the app
        st.sidebar.error(f"Modules could not be loaded: {exc}")
        return []


def build_navigation(actor: Actor) -> st.navigation:
    sections = core_pages(actor)
    modules = module_pages(actor)
    if modules:
        sections["Modules"] = modules
    st.session_state["_hub_pages"] = page_titles(sections)  # what this user may open (shown in tests and Home)
    return st.navigation(sections)


def page_titles(sections: dict[str, list[st.Page]]) -> list[str]:
    return [page.title for pages in sections.values() for page in pages]

