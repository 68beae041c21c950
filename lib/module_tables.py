"""Which tables a module owns, and the check that keeps its migration SQL inside them.

A module owns the tables that start with its `table_prefix`, except core tables and tables of a module whose
prefix is longer (`crm_` must not reach `crm_tools_items`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import lru_cache

from lib.migrations import CORE_MIGRATIONS_DIR, MigrationFile, MigrationRefused

HISTORY_TABLES = frozenset({"module_migrations"})
_IDENT = r'(?:"[^"]+"|`[^`]+`|\[[^\]]+\]|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"
_ALLOWED_START = {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "SELECT", "COMMENT"}
_ALLOWED_CREATE = re.compile(
    r"^CREATE\s+(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?(?:UNIQUE\s+)?(TABLE|INDEX|VIEW|TRIGGER|SEQUENCE)\b", re.I
)
# (pattern, what the captured names are); every capture must be a table/object the module owns
_TARGETS: tuple[re.Pattern, ...] = tuple(
    re.compile(p, re.I | re.S)
    for p in (
        rf"\bCREATE\s+(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<n>{_QUALIFIED})",
        rf"\bALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<n>{_QUALIFIED})",
        rf"\bRENAME\s+TO\s+(?P<n>{_QUALIFIED})",
        rf"\bDROP\s+(?:TABLE|VIEW|INDEX|TRIGGER|SEQUENCE)\s+(?:IF\s+EXISTS\s+)?(?P<list>{_QUALIFIED}(?:\s*,\s*{_QUALIFIED})*)",
        rf"\bCREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?(?P<n>{_QUALIFIED})\s+ON\s+(?:ONLY\s+)?(?P<m>{_QUALIFIED})",
        rf"\bCREATE\s+(?:(?:TEMP|TEMPORARY)\s+)?(?:VIEW|SEQUENCE)\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<n>{_QUALIFIED})",
        rf"\bCREATE\s+(?:(?:TEMP|TEMPORARY)\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<n>{_QUALIFIED}).*?\bON\s+(?P<m>{_QUALIFIED})",
        rf"\b(?:INSERT|REPLACE)\s+(?:OR\s+\w+\s+)?INTO\s+(?P<n>{_QUALIFIED})",
        rf"\bUPDATE\s+(?:OR\s+\w+\s+)?(?:ONLY\s+)?(?P<n>{_QUALIFIED})\s+SET\b",
        rf"\bDELETE\s+FROM\s+(?:ONLY\s+)?(?P<n>{_QUALIFIED})",
        rf"\bTRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?(?P<list>{_QUALIFIED}(?:\s*,\s*{_QUALIFIED})*)",
        rf"\bCOMMENT\s+ON\s+(?:TABLE|COLUMN)\s+(?P<n>{_QUALIFIED})",
    )
)
_CORE_CREATE = re.compile(rf"\bCREATE\s+(?:TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<n>{_IDENT})", re.I)


def _strip_literals(sql: str) -> str:
    """SQL without comments and string contents, so `'DELETE FROM x'` in a value is not a target."""
    sql = re.sub(r"--[^\n]*", " ", sql)
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def _unquote(name: str) -> str:
    return ".".join(part.strip('"`[]') for part in re.split(r"\s*\.\s*", name.strip())).lower()


@lru_cache(maxsize=4)
def _core_tables_cached(signature: tuple[tuple[str, int], ...]) -> frozenset[str]:
    found = set(HISTORY_TABLES)
    for filename, _mtime in signature:
        sql = _strip_literals((CORE_MIGRATIONS_DIR / filename).read_text(encoding="utf-8"))
        found.update(_unquote(m.group("n")) for m in _CORE_CREATE.finditer(sql))
    return frozenset(found)


def core_tables() -> frozenset[str]:
    """Tables the core migrations create (plus the history table): no module may touch them."""
    signature = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(CORE_MIGRATIONS_DIR.glob("*.sql")))
    return _core_tables_cached(signature)


def prefix_clash(prefix: str) -> str | None:
    """The core table a prefix would reach into, if any."""
    return next((t for t in sorted(core_tables()) if t.startswith(prefix)), None)


def owner_of(table: str, prefixes: dict[str, str]) -> str | None:
    """The module (name → prefix) owning `table`: the longest matching prefix; None for core/unowned."""
    table = table.lower()
    if table in core_tables():
        return None
    best: tuple[int, str] | None = None
    for name, prefix in prefixes.items():
        if table.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), name)
    return best[1] if best else None


def owned_tables(module: str, tables: Iterable[str], prefixes: dict[str, str]) -> list[str]:
    return sorted(t for t in tables if owner_of(t, prefixes) == module)


def statement_targets(statement: str) -> list[str]:
    """Every object a statement creates, alters, drops or writes to (lower-case, unquoted)."""
    sql = _strip_literals(statement)
    names: list[str] = []
    for pattern in _TARGETS:
        for m in pattern.finditer(sql):
            groups = m.groupdict()
            if groups.get("list"):
                names += [_unquote(n) for n in re.split(r"\s*,\s*", groups["list"])]
            for key in ("n", "m"):
                if groups.get(key):
                    names.append(_unquote(groups[key]))
    return names


def check_statement(module: str, statement: str, prefixes: dict[str, str]) -> str | None:
    """Why `statement` is refused for `module`, or None when it only touches the module's own objects."""
    sql = _strip_literals(statement).strip()
    if not sql:
        return None
    first = sql.split(None, 1)[0].upper()
    if first not in _ALLOWED_START:
        return f"{first} statements are not allowed in module migrations (the runner owns transactions and settings)"
    if first == "CREATE" and not _ALLOWED_CREATE.match(sql):
        kind = " ".join(sql.split()[:3])
        return f"'{kind}' is not allowed in module migrations (only tables, indexes, views, triggers, sequences)"
    prefix = prefixes[module]
    for name in statement_targets(statement):
        if "." in name:
            return f"'{name}': use unqualified names starting with {prefix}"
        if owner_of(name, prefixes) != module:
            owner = owner_of(name, prefixes)
            whose = "a core table" if name in core_tables() else (
                f"a table of module {owner}" if owner else f"not a name starting with {prefix}")
            return f"'{name}' is {whose}; module {module} may only create or change objects named {prefix}…"
    return None


def migration_guard(module: str, prefixes: dict[str, str]) -> Callable[[MigrationFile, str], None]:
    """A guard for lib.migrations.migrate that refuses SQL reaching outside the module's prefix."""

    def guard(file: MigrationFile, statement: str) -> None:
        reason = check_statement(module, statement, prefixes)
        if reason:
            raise MigrationRefused(f"migration {module}/{file.filename} refused before running: {reason}")

    return guard
