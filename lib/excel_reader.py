"""Read a sheet of an .xlsx/.xlsm workbook safely: refuse what is not one, find the header row, map headers.

Cells are read with python-calamine, which returns the values Excel cached and never evaluates formulas.
Before calamine sees the file, the zip is checked against decompression bombs and the OLE2 container that
encrypted workbooks and .xls files use is recognised, so each refusal has its own one-line reason.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

from python_calamine import CalamineError, CalamineSheet, CalamineWorkbook

from lib.config import get_settings
from lib.errors import InputError

ACCEPTED_SUFFIXES = (".xlsx", ".xlsm")
OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_SIGNATURE = b"PK\x03\x04"
ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")
MAX_UNCOMPRESSED_BYTES = 1024 * 1024 * 1024
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_FROM_BYTES = 10 * 1024 * 1024  # small members may compress extremely well without harm
HEADER_SCAN_ROWS = 30


class WorkbookRefused(InputError):
    """The file is not an Excel workbook we read; the message is the one line the user sees."""


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def check_size(size: int, limit_mb: int | None = None) -> None:
    """Refuse a file over IMPORT_MAX_FILE_MB before reading it."""
    limit_mb = get_settings().import_max_file_mb if limit_mb is None else limit_mb
    if size > limit_mb * 1024 * 1024:
        raise WorkbookRefused(
            f"the file is {_megabytes(size)}, over the {limit_mb} MB limit (IMPORT_MAX_FILE_MB)")


def check_workbook_bytes(head: bytes, data: io.BufferedIOBase | io.BytesIO, file_name: str) -> None:
    """Refuse anything that is not a readable, plausible .xlsx/.xlsm zip (`head` = its first bytes)."""
    suffix = Path(file_name).suffix.lower()
    if suffix == ".csv":
        raise WorkbookRefused(f"{file_name}: CSV files are not supported; save the export as .xlsx")
    if not head:
        raise WorkbookRefused(f"{file_name}: the file is empty")
    if head.startswith(OLE2_SIGNATURE):
        data.seek(0)
        if ENCRYPTION_STREAM in data.read():
            raise WorkbookRefused(
                f"{file_name}: the workbook is encrypted (password-protected); save it without a password and try again")
        raise WorkbookRefused(
            f"{file_name}: this is an old Excel 97-2003 (.xls) file, which is not supported; save it as .xlsx")
    if suffix == ".xls":
        raise WorkbookRefused(f"{file_name}: .xls files are not supported; save the export as .xlsx")
    if suffix and suffix not in ACCEPTED_SUFFIXES:
        raise WorkbookRefused(f"{file_name}: {suffix} files are not supported; upload an .xlsx or .xlsm workbook")
    if not head.startswith(ZIP_SIGNATURE):
        raise WorkbookRefused(f"{file_name}: not an Excel workbook (.xlsx/.xlsm)")
    data.seek(0)
    try:
        with zipfile.ZipFile(data) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise WorkbookRefused(f"{file_name}: the file is damaged or truncated (not a readable .xlsx)") from None
    names = {m.filename for m in members}
    if "xl/workbook.xml" not in names:
        raise WorkbookRefused(f"{file_name}: not an Excel workbook (the zip has no xl/workbook.xml)")
    if any(m.flag_bits & 0x1 for m in members):
        raise WorkbookRefused(f"{file_name}: the workbook is encrypted (password-protected); save it without a password")
    total = sum(m.file_size for m in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise WorkbookRefused(
            f"{file_name}: the workbook would unpack to {_megabytes(total)}, more than the "
            f"{_megabytes(MAX_UNCOMPRESSED_BYTES)} allowed (a zip bomb?)")
    for m in members:
        if m.file_size >= RATIO_CHECK_FROM_BYTES and m.file_size > MAX_COMPRESSION_RATIO * max(m.compress_size, 1):
            raise WorkbookRefused(
                f"{file_name}: {m.filename} is compressed {m.file_size // max(m.compress_size, 1)}:1, "
                f"more than {MAX_COMPRESSION_RATIO}:1 (a zip bomb?)")


def open_workbook(source: Path | str | bytes, file_name: str | None = None) -> CalamineWorkbook:
    """A checked workbook from a path or the bytes of an upload; raises WorkbookRefused with the reason."""
    if isinstance(source, bytes):
        file_name = file_name or "upload"
        check_size(len(source))
        stream = io.BytesIO(source)
        check_workbook_bytes(source[:8], stream, file_name)
        stream.seek(0)
        opener = lambda: CalamineWorkbook.from_filelike(stream)  # noqa: E731
    else:
        path = Path(source)
        file_name = file_name or path.name
        if not path.is_file():
            raise WorkbookRefused(f"{file_name}: no such file")
        check_size(path.stat().st_size)
        with path.open("rb") as handle:
            check_workbook_bytes(handle.read(8), handle, file_name)
        opener = lambda: CalamineWorkbook.from_path(str(path))  # noqa: E731
    try:
        return opener()
    except CalamineError as exc:
        raise WorkbookRefused(f"{file_name}: the workbook cannot be read ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated classes for a broken file
        raise WorkbookRefused(f"{file_name}: the workbook cannot be read ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- headers ---------------------------------------------------------------------------------------------------

_HEADER_NOISE = re.compile(r"[.:]+")
_HEADER_SPACE = re.compile(r"[\s\-_]+")


def normalize_header(value: object) -> str:
    """'  CVR-nr.: ' → 'cvr nr'; case, stray spaces, dots, colons and dashes do not matter."""
    text = _HEADER_NOISE.sub(" ", str(value or "")).casefold()
    return _HEADER_SPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class HeaderSpec:
    """Which fields a sheet may have, under which header texts, and when a row counts as the header."""

    aliases: dict[str, tuple[str, ...]]
    is_complete: Callable[[set[str]], bool]
    describe_required: str

    def lookup(self) -> dict[str, str]:
        return {normalize_header(alias): name for name, names in self.aliases.items() for alias in names}


def map_headers(cells: Iterable[object], spec: HeaderSpec) -> dict[str, int]:
    """field → column index for the recognised header cells (the first of duplicates wins)."""
    lookup = spec.lookup()
    mapping: dict[str, int] = {}
    for index, cell in enumerate(cells):
        name = lookup.get(normalize_header(cell))
        if name and name not in mapping:
            mapping[name] = index
    return mapping


def is_blank(cells: Iterable[object]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


@dataclass
class SheetTable:
    """A sheet's header and its rows below it, as read; `first_row` is the Excel row number of the first.

    `rows` is an iterator, consumed once, so a large sheet's cells never all exist as Python objects at
    once; `height` counts the rows below the header (blank and total rows included).
    """

    sheet: str
    header_row: int
    headers: list[str]
    mapping: dict[str, int]
    rows: Iterator[list] = field(default_factory=lambda: iter(()), repr=False)
    first_row: int = 0
    height: int = 0

    @property
    def unrecognised(self) -> list[str]:
        used = set(self.mapping.values())
        return [h for i, h in enumerate(self.headers) if h.strip() and i not in used]


def _find_header(rows: Iterator[list], spec: HeaderSpec, scanned: list[list] | None = None) -> tuple[int, list] | None:
    """The first of the top rows that has the required columns; the rows looked at go into `scanned`."""
    for index, cells in enumerate(rows):
        if scanned is not None:
            scanned.append(cells)
        if spec.is_complete(set(map_headers(cells, spec))):
            return index, cells
        if index + 1 >= HEADER_SCAN_ROWS:
            return None
    return None


def _header_text(cell: object) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return "" if cell is None else str(cell).strip()


def choose_sheet(workbook: CalamineWorkbook, spec: HeaderSpec, sheet: str | None = None,
                 preferred: str | None = None, fallback_first: bool = False) -> str:
    """`sheet` when given (it must exist), else `preferred` when present, else the first sheet with a header
    (else, with `fallback_first`, the first sheet: the columns are being mapped by hand)."""
    names = list(workbook.sheet_names)
    if sheet is not None:
        if sheet not in names:
            raise InputError(f"there is no sheet named {sheet!r} (sheets: {', '.join(map(repr, names))})")
        return sheet
    if preferred:
        for name in names:
            if name.strip().casefold() == preferred.casefold():
                return name
    for name in names:
        if _find_header(sheet_rows(workbook.get_sheet_by_name(name)), spec):
            return name
    if fallback_first and names:
        return names[0]
    raise InputError(f"no sheet has a header row with the required columns ({spec.describe_required})")


def sheet_rows(source: CalamineSheet) -> Iterator[list]:
    """The sheet's rows from Excel row 1 and column A. iter_rows starts at row 1 but at the first used
    column, so rows are padded when column A is empty (to_python(skip_empty_area=False) does the same)."""
    rows = iter(source.iter_rows())
    start = source.start
    pad = [""] * start[1] if start and start[1] else None
    return rows if pad is None else ([*pad, *cells] for cells in rows)


def read_sheet(workbook: CalamineWorkbook, sheet: str, spec: HeaderSpec,
               columns: dict[str, int | None] | None = None) -> SheetTable:
    """The header row (first row within the top rows that has the required columns) and the rows below it.

    `columns` corrects the detected mapping: field → column index, or None to leave a field unread. The rows
    below the header are read as they are consumed; only the rows up to the first data row are read here.
    """
    try:
        source = workbook.get_sheet_by_name(sheet)
        rows = sheet_rows(source)
    except Exception as exc:  # noqa: BLE001 - a sheet calamine cannot parse is a bad file, whatever the class
        raise InputError(f"sheet {sheet!r} cannot be read ({_first_line(exc)})") from None
    scanned: list[list] = []
    found = _find_header(rows, spec, scanned)
    if found is None and columns:  # mapped by hand: the first non-blank row is the header
        found = next(((i, r) for i, r in enumerate(chain(scanned, rows)) if not is_blank(r)), None)
    if found is None:
        if all(is_blank(r) for r in chain(scanned, rows)):
            raise InputError(f"sheet {sheet!r} is empty")
        raise InputError(f"sheet {sheet!r} has no header row with the required columns ({spec.describe_required})")
    index, cells = found
    headers = [_header_text(c) for c in cells]
    mapping = map_headers(cells, spec)
    for name, column in (columns or {}).items():
        if column is None:
            mapping.pop(name, None)
        elif 0 <= column < len(headers):
            mapping[name] = column
    if not spec.is_complete(set(mapping)):
        raise InputError(f"sheet {sheet!r}: the column mapping lacks required columns ({spec.describe_required})")
    ahead = scanned[index + 1 :]
    if all(is_blank(r) for r in ahead):  # read on to the first data row
        for cells in rows:
            ahead.append(cells)
            if not is_blank(cells):
                break
        else:
            raise InputError(f"sheet {sheet!r} has a header but no data rows")
    end = source.end
    height = max(0, end[0] + 1 - (index + 1)) if end else len(ahead)
    return SheetTable(sheet, index + 1, headers, mapping, chain(ahead, rows), index + 2, height)
