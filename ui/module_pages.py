"""Module pages in the app: the navigation entries and the wrapper that keeps a broken module on its own page."""

from __future__ import annotations

import logging
import runpy
import traceback
from collections.abc import Callable

import streamlit as st

from lib.db import get_engine
from lib.errors import HubError
from lib.modules import (
    ModuleInfo,
    check_health,
    load_registry,
    navigable,
    page_url_path,
    record_new_modules,
    record_page_view,
)

log = logging.getLogger(__name__)
DEFAULT_ICON = ":material/extension:"
FAILED_ICON = ":material/error:"


_recorded: set[str] = set()


def module_navigation_pages(role: str = "admin") -> list[st.Page]:
    """st.Page entries for every enabled, available module page `role` may see (empty when the system is off).

    The first call in a process (app start) records modules seen for the first time; later calls only read.
    """
    engine = get_engine()
    if str(engine.url) not in _recorded:
        _recorded.add(str(engine.url))
        record_new_modules(engine)
    registry = load_registry(engine)
    pages = []
    for info in navigable(registry, role):
        for spec in info.manifest.pages:
            pages.append(st.Page(
                _page_callable(info.name, spec.file),
                title=spec.title,
                icon=FAILED_ICON if info.status == "failed" else (spec.icon or DEFAULT_ICON),
                url_path=page_url_path(info.name, spec.slug),
            ))
    return pages


def _page_callable(name: str, page_file: str) -> Callable[[], None]:
    def run_module_page() -> None:
        render_module_page(name, page_file)

    run_module_page.__name__ = f"mod_{name}_{page_file.replace('/', '_').removesuffix('.py')}"
    return run_module_page


def _problem(engine, name: str, page_file: str) -> tuple[ModuleInfo | None, str | None]:
    registry = load_registry(engine)
    if not registry.system_enabled:
        return None, "The module system is switched off (MODULES_ENABLED=false)."
    info = registry.get(name)
    if info is None:
        return None, f"There is no module named {name!r} in {registry.directory}."
    if info.status == "unavailable":
        return info, f"Module {name} is unavailable: {info.error}"
    if not info.enabled:
        return info, f"Module {name} is disabled. Enable it on the Modules page."
    if page_file not in {p.file for p in info.manifest.pages}:
        return info, f"Module {name} has no page {page_file!r} in its module.json."
    health = check_health(engine, info)
    if health.healthy is False:
        return info, f"Module {name} is not healthy: {health.message}"
    return info, None


def render_module_page(name: str, page_file: str) -> None:
    """Run one module page; any failure is shown here as an error, recorded, and goes no further."""
    try:
        engine = get_engine()
        info, problem = _problem(engine, name, page_file)
    except HubError as exc:
        st.error(f"Module {name}: {exc}")
        return
    if problem:
        st.error(problem)
        if info is not None and info.manifest is not None:
            _record(engine, name, page_file, problem)
        return
    error = None
    try:
        runpy.run_path(str(info.folder / page_file), run_name="__main__")
        if info.manifest.jobs and page_file == info.manifest.pages[0].file:  # the module's jobs, under its first page
            from ui.module_jobs import job_panel

            job_panel(info.manifest)
    except Exception as exc:  # noqa: BLE001 - a module's failure must stay on its own page
        error = f"{type(exc).__name__}: {exc}"
        st.error(f"Module {name} failed on page {page_file}: {error}")
        with st.expander("Details"):
            st.code(traceback.format_exc())
    _record(engine, name, page_file, error)


def _record(engine, name: str, page_file: str, error: str | None) -> None:
    try:
        record_page_view(engine, name, page_file, error)
    except Exception:  # noqa: BLE001 - counting a view must never break the page
        log.exception("could not record a view of module %s page %s", name, page_file)
