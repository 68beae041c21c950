"""A fresh PostgreSQL schema for one benchmark run: its URL and the function that drops it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy import create_engine, text


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with every connection's search_path set to `schema`."""
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}"


def fresh_schema(base_url: str, prefix: str = "bench") -> tuple[str, Callable[[], None]]:
    """Create a new schema on the server of `base_url`; return its URL and a drop() for the end of the run."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return schema_url(base_url, schema), drop
