"""Template Module health check: its table exists and can be read."""

from sqlalchemy import text

from lib.modules import module_connection, module_table

MODULE = "template_module"


def check() -> tuple[bool, str]:
    """(healthy, message) — called by the Modules page and `manage.py modules health`, with a timeout."""
    table = module_table(MODULE, "items")
    with module_connection(MODULE) as conn:
        count = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    return True, f"{table} readable, {count} item(s)"
