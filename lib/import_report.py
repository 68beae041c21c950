"""The error report of an import (rejected and unmatched rows) as CSV or xlsx, safe to open in Excel."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal

from openpyxl import Workbook

from lib.subscription_import import ImportPlan
from lib.subscription_rows import FIELD_LABELS

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
CELL_CHARS = 100  # a cell's text in the report is cut to this (one 5 MB cell made a 5 MB line)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ESCAPE = re.compile("_(x[0-9A-Fa-f]{4}_)")  # xlsx would read "_x0001_" back as a control character


def neutralize(value: object) -> object:
    """Text made safe to open: control characters removed, cut to CELL_CHARS, and text that Excel would run
    as a formula — starting with = + - @ (also fullwidth), tab, CR or LF, also after leading spaces — gets a
    leading apostrophe (OWASP CSV injection advice)."""
    if not isinstance(value, str):
        return value
    text = _CONTROL.sub("", value)
    if len(text) > CELL_CHARS:
        text = text[: CELL_CHARS - 1] + "…"
    if text.lstrip(" \u3000\xa0").startswith(FORMULA_STARTS) or text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def _cell(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, date):
        return value.strftime("%d-%m-%Y")
    return neutralize(value)


def _xlsx_text(value: object) -> object:
    return _ESCAPE.sub(r"_x005F_\1", value) if isinstance(value, str) else value


def error_rows(plan: ImportPlan) -> tuple[list[str], list[list]]:
    """Header and rows: Excel row, outcome, reason, then the row's cells as they were in the file."""
    fields = list(plan.export.mapping)
    header = ["row", "outcome", "message", *(FIELD_LABELS[f] for f in fields)]
    rows: list[list] = []
    for item in plan.items:
        if item.outcome not in ("rejected", "unmatched"):
            continue
        src = item.source
        cells = src.cells if src is not None and src.cells is not None else {}
        parsed = {"customer_number": src.customer_number, "cvr": src.cvr, "customer_name": src.customer_name,
                  **src.values} if src is not None else {}
        values = [cells[f] if f in cells else parsed.get(f) for f in fields]
        rows.append([item.row, item.outcome, item.message, *values])
    return header, rows


def error_report_csv(plan: ImportPlan) -> bytes:
    """UTF-8 with a byte order mark and semicolons, as Danish Excel opens CSV."""
    header, rows = error_rows(plan)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else _cell(v) for v in row])
    return out.getvalue().encode("utf-8-sig")


def error_report_xlsx(plan: ImportPlan) -> bytes:
    header, rows = error_rows(plan)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Fejl")
    sheet.append(header)
    for row in rows:  # "_x0041_" in text would be read back as "A" (or a control character): escape the "_"
        sheet.append([None if v == "" else _xlsx_text(_cell(v)) for v in row])
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
