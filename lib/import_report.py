"""The error report of an import (rejected and unmatched rows) as CSV or xlsx, safe to open in Excel."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

from openpyxl import Workbook

from lib.subscription_import import ImportPlan, PlannedRow
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


def _header(fields: list[str]) -> list[str]:
    return ["row", "outcome", "message", *(FIELD_LABELS[f] for f in fields)]


def _error_row(item: PlannedRow, fields: list[str]) -> list:
    """Excel row, outcome, reason, then the row's cells as they were in the file."""
    src = item.source
    cells = src.cells if src is not None and src.cells is not None else {}
    parsed = {"customer_number": src.customer_number, "cvr": src.cvr, "customer_name": src.customer_name,
              **src.values} if src is not None else {}
    return [item.row, item.outcome, item.message, *(cells[f] if f in cells else parsed.get(f) for f in fields)]


def _is_error(item: PlannedRow) -> bool:
    return item.outcome in ("rejected", "unmatched")


def error_rows(plan: ImportPlan) -> tuple[list[str], list[list]]:
    """Header and rows: Excel row, outcome, reason, then the row's cells as they were in the file."""
    fields = list(plan.export.mapping)
    return _header(fields), [_error_row(item, fields) for item in plan.items if _is_error(item)]


def _csv_line(row: list) -> list:
    return ["" if v is None else _cell(v) for v in row]


def _xlsx_line(row: list) -> list:  # "_x0041_" in text would be read back as "A" (or a control character)
    return [None if v == "" else _xlsx_text(_cell(v)) for v in row]


def error_report_csv(plan: ImportPlan) -> bytes:
    """UTF-8 with a byte order mark and semicolons, as Danish Excel opens CSV."""
    header, rows = error_rows(plan)
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(header)
    for row in rows:
        writer.writerow(_csv_line(row))
    return out.getvalue().encode("utf-8-sig")


def error_report_xlsx(plan: ImportPlan) -> bytes:
    header, rows = error_rows(plan)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Fejl")
    sheet.append(header)
    for row in rows:
        sheet.append(_xlsx_line(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


class ErrorReportFiles:
    """The error report written as the rows stream (a preview keeps only the first errors; the files get all):
    `<stem>.csv` and `<stem>.xlsx`, made when the first error arrives. openpyxl's write-only sheet keeps its
    rows in a temporary file, so memory follows the chunk here too."""

    def __init__(self, folder: Path, stem: str, fields: list[str]):
        self.paths = {"xlsx": folder / f"{stem}.xlsx", "csv": folder / f"{stem}.csv"}
        self.fields = fields
        self._csv = None
        self._writer = None
        self._workbook = None
        self._sheet = None

    def add(self, planned: list[PlannedRow]) -> None:
        for item in planned:
            if not _is_error(item):
                continue
            if self._csv is None:
                self._open()
            row = _error_row(item, self.fields)
            self._writer.writerow(_csv_line(row))
            self._sheet.append(_xlsx_line(row))

    def _open(self) -> None:
        self.paths["csv"].parent.mkdir(parents=True, exist_ok=True)
        self._csv = open(self.paths["csv"], "w", encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.writer(self._csv, delimiter=";")
        self._workbook = Workbook(write_only=True)
        self._sheet = self._workbook.create_sheet("Fejl")
        header = _header(self.fields)
        self._writer.writerow(header)
        self._sheet.append(header)

    def close(self) -> dict[str, str]:
        """Finish the files; format → path, or {} when there was no error."""
        if self._csv is None:
            return {}
        self._csv.close()
        self._workbook.save(self.paths["xlsx"])
        self._csv = None
        return {fmt: str(path) for fmt, path in self.paths.items()}
