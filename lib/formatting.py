"""One way to show values to a person: Danish numbers, Copenhagen time, yes/no, blank for empty.

Used by the pages (metrics, tables, charts) and by the command line's human output. JSON output never goes
through here: scripts get raw values.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

COPENHAGEN = ZoneInfo("Europe/Copenhagen")
CURRENCY = "kr."
TIME_NOTE = "Times are Copenhagen time."


def number(value: int | float | Decimal | None, decimals: int = 0) -> str:
    """1234567.5 → '1.234.567,50' (decimals=2); None → ''."""
    if value is None:
        return ""
    text = f"{value:,.{decimals}f}"
    return text.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def money(value: int | float | Decimal | None) -> str:
    """2384.21 → '2.384,21 kr.'; None → ''."""
    return "" if value is None else f"{number(value, 2)} {CURRENCY}"


def when(value: datetime | date | str | None) -> str:
    """A stored UTC time as dd-mm-yyyy HH:MM in Copenhagen time; a date as dd-mm-yyyy; None → ''.
    ISO text (how SQLite hands back dates and times) is read first."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value) if len(value) > 10 else date.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(COPENHAGEN).strftime("%d-%m-%Y %H:%M")
    return value.strftime("%d-%m-%Y")


def yes_no(value) -> str:
    """True/1/'true' → 'yes', False/0 → 'no', None → ''."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return "yes" if value.strip().lower() in ("1", "true", "yes", "t") else "no"
    return "yes" if value else "no"


def text(value) -> str:
    """Any stored value as a person reads it: blank for empty, numbers and times in the formats above."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return number(value, 2 if isinstance(value, Decimal) and value != value.to_integral_value() else 0)
    if isinstance(value, float):
        return number(value, 0 if value.is_integer() else 2)
    if isinstance(value, (datetime, date)):
        return when(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


# What each kind's statistics mean, in a person's words: (format, keys it needs).
_SUMMARIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "import-subscriptions": ("{created} created, {updated} updated, {unchanged} unchanged, {unmatched} unmatched",
                             ("created", "updated", "unchanged", "unmatched")),
    "cvr-lookup": ("{found} of {candidates} found", ("found", "candidates")),
    "economic-relink": ("{linked} linked, {changed} changed of {hub_customers} customers",
                        ("linked", "changed", "hub_customers")),
    "crm-sync": ("{updated} CVR numbers filled, {linked} linked of {accounts} accounts",
                 ("updated", "linked", "accounts")),
    "undo": ("undid run {undone_run_id}: {fields_restored} fields, {rows_deleted} rows removed, "
             "{rows_restored} rows restored", ("undone_run_id", "fields_restored", "rows_deleted", "rows_restored")),
    "demo-data": ("{customers} demo customers", ("customers",)),
}


def run_summary(kind: str, stats: dict | None) -> str:
    """A run's statistics as one readable line ('7 of 10 found'); counts in Danish format; '' when none."""
    if not stats:
        return ""
    template, keys = _SUMMARIES.get(kind, ("", ()))
    if template and all(k in stats for k in keys):
        return template.format(**{k: text(stats[k]) if isinstance(stats[k], (int, float)) else stats[k] for k in keys})
    parts = [f"{k.replace('_', ' ')} {text(v)}" for k, v in stats.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool) and v]
    return ", ".join(parts[:6])


# The one word for each outcome a job's preview can give a row, per kind (docs/GLOSSARY.md explains each).
# Metrics, filters and tables use these words, so a count and the rows it counts always carry the same name.
OUTCOME_WORDS: dict[str, dict[str, str]] = {
    "import-subscriptions": {"create": "create", "update": "update", "unchanged": "unchanged",
                             "skipped_locked": "locked", "unmatched": "unmatched", "rejected": "rejected"},
    "cvr-lookup": {"found": "found", "ambiguous": "ambiguous", "not_found": "not found"},
    "economic-relink": {"new": "new link", "changed": "changed link", "unchanged": "unchanged",
                        "ambiguous": "ambiguous", "conflict": "conflict", "unmatched": "unmatched"},
    "crm-sync": {"fill": "fill CVR", "link": "link", "unchanged": "unchanged", "conflict": "conflict",
                 "ambiguous": "ambiguous", "unmatched": "unmatched"},
}


def outcome_word(kind: str, outcome: str) -> str:
    """The glossary's word for `outcome` of a `kind` run ('ambiguous', 'fill CVR', …)."""
    return OUTCOME_WORDS.get(kind, {}).get(outcome, outcome.replace("_", " "))


def outcome_label(kind: str, outcome: str) -> str:
    """The glossary's word as a heading or metric label: first letter raised, the rest kept ('Fill CVR')."""
    word = outcome_word(kind, outcome)
    return word[:1].upper() + word[1:]
