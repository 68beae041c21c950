"""Text a person types: the one rule for length limits and control characters."""

from __future__ import annotations

import re

from lib.errors import InputError

# C0 and C1 control characters (NUL, tab, newline, escape, DEL, …) and lone surrogates: PostgreSQL refuses
# NUL and surrogates, SQLite would store them, and no name, address or search needs any of them.
_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class TextRefused(InputError):
    """A text input is too long or contains a control character (exit 2, nothing written)."""


def text_problem(value: str, limit: int) -> str | None:
    """Why `value` is not acceptable text of at most `limit` characters, or None."""
    if len(value) > limit:
        return f"is {len(value):,} characters long; at most {limit:,} are allowed"
    bad = _FORBIDDEN.search(value)
    if bad:
        return (f"contains the control character U+{ord(bad.group()):04X} at position {bad.start() + 1}; "
                "remove it (it is often pasted in invisibly)")
    return None


def check_text(value: str, *, what: str, limit: int) -> str:
    """`value` unchanged, or TextRefused saying what is wrong with `what`."""
    problem = text_problem(value, limit)
    if problem:
        raise TextRefused(f"{what} {problem}")
    return value
