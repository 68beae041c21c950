"""Read a sheet of an .xlsx/.xlsm workbook safely: refuse what is not one, find the header row, map headers.

Everything that touches the file runs in a child process (`read_table`, `read_first_row`) with an address-space
and a CPU-time limit, so a crash or a runaway allocation in the parser ends the child, never the caller; the
caller gets `WorkbookRefused` ("file refused: …") and the rows, already cut to the columns it reads, a chunk
at a time. In the child, cells are read with python-calamine, which returns the values Excel cached and never
evaluates formulas; a sheet of IMPORT_STREAM_FROM_ROWS rows or more is read by lib.xlsx_stream instead, a block
of XML at a time, with the same values (calamine would hold the whole sheet). Before calamine sees the file, the zip is checked against decompression bombs and the OLE2
container that encrypted workbooks and .xls files use is recognised; before calamine loads a sheet (it allocates
the whole rectangle up to the furthest cell), the sheet's XML is scanned for cell references beyond the row and
column limits, and for error cells and NaN/infinity, which calamine would return as empty cells or dates.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import resource
import selectors
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path, PurePosixPath
from xml.etree import ElementTree

from lib.errors import InputError

ACCEPTED_SUFFIXES = (".xlsx", ".xlsm")
OLE2_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP_SIGNATURE = b"PK\x03\x04"
ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")
MAX_UNCOMPRESSED_BYTES = 1024 * 1024 * 1024
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_FROM_BYTES = 10 * 1024 * 1024  # small members may compress extremely well without harm
HEADER_SCAN_ROWS = 30
CHUNK_ROWS = 2500
ROOT = Path(__file__).resolve().parent.parent


class WorkbookRefused(InputError):
    """The file is not an Excel workbook we read; the message is the one line the user sees."""


class CellError(str):
    """An Excel error cell (#DIV/0!, #N/A, …), or a cell the parser could not convert ("#UNREADABLE")."""

    __slots__ = ()

    def __reduce__(self):
        return CellError, (str(self),)


UNREADABLE = "#UNREADABLE"


@dataclass(frozen=True)
class ReadLimits:
    """How much of a file is read at most (settings IMPORT_MAX_*, IMPORT_READ_*; docs/SECURITY.md)."""

    max_file_mb: int = 50
    max_rows: int = 1_048_576
    max_columns: int = 100
    max_sheets: int = 10
    memory_mb: int = 2048
    seconds: int = 120
    stream_from_rows: int = 200_000

    @classmethod
    def from_settings(cls) -> ReadLimits:
        from lib.config import get_settings  # not in the child, which gets its limits from the caller

        s = get_settings()
        return cls(s.import_max_file_mb, s.import_max_rows, s.import_max_columns, s.import_max_sheets,
                   s.import_read_memory_mb, s.import_read_seconds, s.import_stream_from_rows)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def column_letters(index: int) -> str:
    """0 → 'A', 25 → 'Z', 26 → 'AA'."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def column_index(letters: str) -> int:
    """'A' → 0, 'AA' → 26 (the inverse of column_letters)."""
    index = 0
    for ch in letters.upper():
        index = index * 26 + ord(ch) - 64
    return index - 1


def cell_name(row: int, column: int) -> str:
    """The Excel name of a cell: row 7, column index 4 → 'E7'."""
    return f"{column_letters(column)}{row}"


def check_size(size: int, limit_mb: int | None = None) -> None:
    """Refuse a file over IMPORT_MAX_FILE_MB before reading it."""
    limit_mb = ReadLimits.from_settings().max_file_mb if limit_mb is None else limit_mb
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
    """Which fields a sheet may have, under which header texts, and when a row counts as the header: every
    field of `required` and at least one of `one_of` (plain data: it is sent to the reading child)."""

    aliases: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    one_of: tuple[str, ...]
    describe_required: str

    def is_complete(self, fields: set[str]) -> bool:
        return set(self.required) <= fields and (not self.one_of or bool(fields & set(self.one_of)))

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

    def close(self) -> None:
        """Stop reading (the reading child is ended); for a caller that gives up before the last row."""
        close = getattr(self.rows, "close", None)
        if close is not None:
            close()

    @property
    def unrecognised(self) -> list[str]:
        used = set(self.mapping.values())
        return [h for i, h in enumerate(self.headers) if h.strip() and i not in used]


def _header_text(cell: object) -> str:
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return "" if cell is None else str(cell).strip()


def map_headers_strict(cells: list, spec: HeaderSpec, sheet: str) -> dict[str, int]:
    """`map_headers`, but two columns with headers of the same field refuse the sheet: which one is meant is
    a guess we do not make (the page's column mapping, or deleting one column, settles it)."""
    lookup = spec.lookup()
    mapping: dict[str, int] = {}
    for index, cell in enumerate(cells):
        name = lookup.get(normalize_header(cell))
        if name and name in mapping:
            first = mapping[name]
            raise InputError(
                f"sheet {sheet!r}: columns {column_letters(first)} ({_header_text(cells[first])!r}) and "
                f"{column_letters(index)} ({_header_text(cell)!r}) are both the {name.replace('_', ' ')} column; "
                "delete one, or choose one in the column mapping")
        if name:
            mapping[name] = index
    return mapping


# --- structure: decided from the sheet's XML before anything is allocated from it ------------------------------

_NS_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_SCAN_BYTES = 1 << 20
_SMALL_PART_BYTES = 16 * 1024 * 1024  # workbook.xml and its rels are parsed whole; they are small in any export
_REF_VALUE = re.compile(rb'["\']([A-Za-z]*)([0-9]*)["\']')
_ERROR_TYPE = re.compile(rb'\bt\s*=\s*["\']e["\']')
# "v>" first: a literal prefix the regex engine jumps between (a leading "<" tried at every tag cost 0.23 s
# per 100,000 rows); the element's opening "<" or "<prefix:" is checked at each (rare) match
_NOT_FINITE = re.compile(rb'v>\s*[-+]?(?:[nN][aA][nN]|[iI][nN][fF])')
_VALUE_TAG_OPEN = re.compile(rb'<(?:[\w.-]+:)?\Z')
_VALUE = re.compile(rb'<(?:[\w.-]+:)?v>([^<]{0,64})<')
_TAG_NAME = re.compile(rb'<(?:[\w.-]+:)?(\w+)')


def sheet_parts(archive: zipfile.ZipFile) -> dict[str, str]:
    """Sheet name → its XML part in the zip (from xl/workbook.xml and its relationships); {} when unclear."""
    try:
        members = {m.filename: m for m in archive.infolist()}
        book, rels = members.get("xl/workbook.xml"), members.get("xl/_rels/workbook.xml.rels")
        if book is None or rels is None or max(book.file_size, rels.file_size) > _SMALL_PART_BYTES:
            return {}
        targets = {r.get("Id"): r.get("Target", "") for r in ElementTree.fromstring(archive.read(rels)).iter()
                   if r.tag == f"{_NS_PKG}Relationship"}
        parts: dict[str, str] = {}
        for sheet in ElementTree.fromstring(archive.read(book)).iter(f"{_NS_MAIN}sheet"):
            target = targets.get(sheet.get(f"{_NS_REL}id"), "")
            path = target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
            parts[sheet.get("name", "")] = os.path.normpath(path).replace(os.sep, "/")
        return parts
    except (ElementTree.ParseError, KeyError, zipfile.BadZipFile, ValueError):
        return {}


def _enclosing_cell_ref(buf: bytes, pos: int) -> tuple[int, int] | None:
    """(row, column index) of the <c> element around `pos` (an attribute or a <v> inside it), if it says."""
    at = pos
    for _ in range(4):
        at = buf.rfind(b"<", 0, at)
        if at < 0:
            return None
        name = _TAG_NAME.match(buf, at)
        if name and name.group(1) == b"c":
            end = buf.find(b">", at)
            ref = re.search(rb'\sr\s*=\s*["\']([A-Za-z]{1,3})([0-9]{1,7})["\']', buf[at:end if end > 0 else None])
            return (int(ref.group(2)), column_index(ref.group(1).decode())) if ref else None
    return None


def scan_sheet(stream: io.BufferedIOBase, limits: ReadLimits, sheet: str) -> tuple[dict[tuple[int, int], str], int]:
    """Refuse a sheet with a cell reference beyond the row or column limit (before calamine, which allocates
    every cell of the rectangle up to the furthest one); return the error and NaN/infinity cells by position,
    and the sheet's extent in rows (the last row's number, or the rows counted where rows are not numbered).

    The scan runs over the decompressed XML in C (regular expressions that match only what is unusual), so
    an ordinary export costs little more than its decompression.
    """
    max_letters = column_letters(limits.max_columns - 1)
    digits = len(str(limits.max_rows))
    far = re.compile(rb'r\s*=\s*["\'](?:[A-Za-z]{%d,}[0-9]*|[A-Za-z]*[0-9]{%d,})["\']' % (len(max_letters), digits))
    special: dict[tuple[int, int], str] = {}
    tail = b""
    extent = counted = 0
    while True:
        data = stream.read(_SCAN_BYTES)
        buf = tail + data
        if data:
            cut = buf.rfind(b"row>") + 4 if b"row>" in buf[-65536:] else buf.rfind(b">") + 1
            buf, tail = buf[:cut], buf[cut:]
        for match in far.finditer(buf):
            if match.start() and buf[match.start() - 1 : match.start()] not in b" \t\r\n":
                continue  # an attribute ending in r (none in sheetData, but be exact)
            letters, number = _REF_VALUE.search(buf, match.start()).groups()
            letters, number = letters.decode(), number.decode()
            ref = f"{letters.upper()}{number}"
            if letters and column_index(letters) >= limits.max_columns:
                raise WorkbookRefused(
                    f"file refused: sheet {sheet!r} has a cell at {ref[:20]}, beyond column {max_letters} "
                    f"(IMPORT_MAX_COLUMNS = {limits.max_columns}); delete what lies to the right of the export")
            if number and (len(number) > 9 or int(number) > limits.max_rows):
                raise WorkbookRefused(
                    f"file refused: sheet {sheet!r} has {'a cell at ' + ref[:20] if letters else 'a row ' + number[:12]}, "
                    f"beyond row {limits.max_rows:,} (IMPORT_MAX_ROWS)")
        for match in _ERROR_TYPE.finditer(buf) if b'"e"' in buf or b"'e'" in buf else ():
            where = _enclosing_cell_ref(buf, match.start())
            if where is not None:
                close = buf.find(b"</", match.end())
                value = _VALUE.search(buf, match.end(), close + 200 if close >= 0 else len(buf))
                text = value.group(1).decode("utf-8", "replace").strip() if value else ""
                special[where] = text if text.startswith("#") else "#ERROR"
        for match in _NOT_FINITE.finditer(buf):
            if not _VALUE_TAG_OPEN.search(buf, max(0, match.start() - 64), match.start()):
                continue  # text ending in "v>" (e.g. a <tv>), not a value element
            where = _enclosing_cell_ref(buf, match.start())
            if where is not None:
                special[where] = "#NUM!"
        counted += buf.count(b"row>")
        last = _last_row_number(buf)
        if last is not None:
            extent = last
        if not data:
            return special, max(extent, counted)


_ROW_TAG = re.compile(rb"""<(?:[\w.-]+:)?row\b[^>]*?\br\s*=\s*["']([0-9]{1,9})["']""")


def _last_row_number(buf: bytes) -> int | None:
    """The number of the last <row r="…"> in `buf` (rows are in ascending order in a worksheet)."""
    at = max(buf.rfind(b"<row"), buf.rfind(b":row"))
    if at < 0:
        return None
    found = _ROW_TAG.match(buf, buf.rfind(b"<", 0, at + 1))
    return int(found.group(1)) if found else None


# --- the child process: everything that parses the file --------------------------------------------------------

class _Book:
    """A checked workbook in the child. Each sheet is scanned (`scan_sheet`) before anything is read from it;
    a sheet that reaches row IMPORT_STREAM_FROM_ROWS or further is then read by lib.xlsx_stream, a block of
    XML at a time (memory follows the block), a smaller one by python-calamine, which is faster but holds the
    whole sheet (≈ 1 KB a row of an export: 200 MB at the default 200,000 rows)."""

    def __init__(self, source: str | bytes, file_name: str, limits: ReadLimits):
        self.file_name, self.limits = file_name, limits
        if isinstance(source, bytes):
            check_size(len(source), limits.max_file_mb)
            stream = io.BytesIO(source)
            check_workbook_bytes(source[:8], stream, file_name)
            self._zip = lambda: zipfile.ZipFile(io.BytesIO(source))  # noqa: E731
        else:
            with open(source, "rb") as handle:
                check_workbook_bytes(handle.read(8), handle, file_name)
            self._zip = lambda: zipfile.ZipFile(source)  # noqa: E731
        self.source = source
        with self._zip() as archive:
            self.parts = sheet_parts(archive)
        self._workbook = None
        self._scans: dict[str, tuple[dict[tuple[int, int], str], int]] = {}
        self._shared: tuple[list[str], dict[int, str], bool] | None = None
        self.sheet_names = list(self.parts) if self.parts else list(self.workbook.sheet_names)

    @property
    def workbook(self):
        """python-calamine's workbook, opened when a sheet is read with it (not for a streamed sheet)."""
        if self._workbook is None:
            from python_calamine import CalamineWorkbook  # only the child imports the parser

            try:
                if isinstance(self.source, bytes):
                    self._workbook = CalamineWorkbook.from_filelike(io.BytesIO(self.source))
                else:
                    self._workbook = CalamineWorkbook.from_path(self.source)
            except Exception as exc:  # noqa: BLE001 - calamine raises several unrelated classes for a broken file
                raise WorkbookRefused(f"{self.file_name}: the workbook cannot be read ({_first_line(exc)})") from None
        return self._workbook

    def _scan(self, sheet: str, part: str) -> tuple[dict[tuple[int, int], str], int]:
        if sheet not in self._scans:
            try:
                with self._zip() as archive, archive.open(part) as stream:
                    self._scans[sheet] = scan_sheet(stream, self.limits, sheet)
            except KeyError:
                raise WorkbookRefused(f"{self.file_name}: sheet {sheet!r} is missing from the workbook") from None
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise WorkbookRefused(f"{self.file_name}: the workbook cannot be read ({_first_line(exc)})") from None
        return self._scans[sheet]

    def rows(self, sheet: str) -> tuple[Iterator[list], int]:
        """The sheet's rows from Excel row 1 and column A (error cells as CellError), and its height."""
        part = self.parts.get(sheet)
        special: dict[tuple[int, int], str] = {}
        if part is not None:
            special, extent = self._scan(sheet, part)
            if extent >= self.limits.stream_from_rows:
                return self._streamed(part), extent
        try:
            source = self.workbook.get_sheet_by_name(sheet)
        except WorkbookRefused:
            raise
        except Exception as exc:  # noqa: BLE001 - a sheet calamine cannot parse is a bad file, whatever the class
            raise InputError(f"sheet {sheet!r} cannot be read ({_first_line(exc)})") from None
        start, end = source.start, source.end
        if end and (end[0] >= self.limits.max_rows or end[1] >= self.limits.max_columns):
            raise WorkbookRefused(f"file refused: sheet {sheet!r} reaches cell {cell_name(end[0] + 1, end[1])}, "
                                  f"beyond {limits_text(self.limits)}")
        height = end[0] + 1 if end else 0
        return _sheet_rows(source, start, special), height

    def _streamed(self, part: str) -> Iterator[list]:
        """The rows of a large sheet, read from its XML a block at a time (lib.xlsx_stream)."""
        from lib import xlsx_stream

        try:
            with self._zip() as archive:
                if self._shared is None:
                    self._shared = (xlsx_stream.shared_strings(archive), xlsx_stream.date_styles(archive),
                                    xlsx_stream.uses_1904(archive))
                strings, styles, is_1904 = self._shared
                width = xlsx_stream.dimension_width(archive, part, self.limits.max_columns)
                yield from xlsx_stream.stream_sheet(archive, part, strings, styles, is_1904, self.limits.max_columns,
                                                    width, CellError, UNREADABLE)
        except (xlsx_stream.SheetStructureError, zipfile.BadZipFile, zlib.error, EOFError, KeyError) as exc:
            raise WorkbookRefused(f"{self.file_name}: the workbook cannot be read ({_first_line(exc)})") from None


def limits_text(limits: ReadLimits) -> str:
    return (f"row {limits.max_rows:,} (IMPORT_MAX_ROWS) or column {column_letters(limits.max_columns - 1)} "
            f"(IMPORT_MAX_COLUMNS)")


def _sheet_rows(source, start: tuple[int, int] | None, special: dict[tuple[int, int], str]) -> Iterator[list]:
    """Rows padded back to column A (iter_rows starts at the first used column); error cells become CellError;
    a row calamine cannot convert (a date far out of range panics in Rust) becomes UNREADABLE cells."""
    pad = [""] * start[1] if start and start[1] else []
    by_row: dict[int, list[tuple[int, str]]] = {}
    for (row, column), text in special.items():
        by_row.setdefault(row, []).append((column, text))
    rows = iter(source.iter_rows())
    width = (source.end[1] + 1) if source.end else 0
    number = 0
    while True:
        number += 1
        try:
            cells = next(rows)
        except StopIteration:
            return
        except BaseException as exc:  # noqa: BLE001 - pyo3's PanicException derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit | MemoryError):
                raise
            cells = [CellError(UNREADABLE)] * max(width - len(pad), 1)
        if pad:
            cells = [*pad, *cells]
        for column, text in by_row.get(number, ()):
            if column < len(cells):
                cells[column] = CellError(text)
        yield cells


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


def choose_sheet(book: _Book, spec: HeaderSpec, sheet: str | None = None,
                 preferred: str | None = None, fallback_first: bool = False) -> str:
    """`sheet` when given (it must exist), else `preferred` when present, else the first sheet with a header
    among the first IMPORT_MAX_SHEETS (else, with `fallback_first`, the first sheet: the columns are being
    mapped by hand)."""
    names = book.sheet_names
    if sheet is not None:
        if sheet not in names:
            raise InputError(f"there is no sheet named {sheet!r} (sheets: {', '.join(map(repr, names[:20]))})")
        return sheet
    if preferred:
        for name in names:
            if name.strip().casefold() == preferred.casefold():
                return name
    for name in names[: book.limits.max_sheets]:
        if _find_header(book.rows(name)[0], spec):
            return name
    if fallback_first and names:
        return names[0]
    among = f" among the first {book.limits.max_sheets} (IMPORT_MAX_SHEETS)" if len(names) > book.limits.max_sheets else ""
    raise InputError(f"no sheet{among} has a header row with the required columns ({spec.describe_required})")


def read_sheet(book: _Book, sheet: str, spec: HeaderSpec,
               columns: dict[str, int | None] | None = None) -> SheetTable:
    """The header row (first row within the top rows that has the required columns) and the rows below it.

    `columns` corrects the detected mapping: field → column index, or None to leave a field unread. The rows
    below the header are read as they are consumed; only the rows up to the first data row are read here.
    """
    rows, end_height = book.rows(sheet)
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
    mapping = map_headers(cells, spec) if columns else map_headers_strict(cells, spec, sheet)
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
    height = max(0, end_height - (index + 1))
    return SheetTable(sheet, index + 1, headers, mapping, chain(ahead, rows), index + 2, height)


def _send(out, message: tuple) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    out.write(struct.pack("<Q", len(data)))
    out.write(data)
    out.flush()


def _limit_child(limits: ReadLimits) -> None:
    """The child's own limits: address space and CPU seconds (a runaway parser ends here, not in the server)."""
    memory = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.seconds, limits.seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def serve(stdin=None, stdout=None) -> int:
    """The child's main: read one request (pickled by `_Reader`) from stdin, answer on stdout."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    request = pickle.loads(stdin.read())
    limits: ReadLimits = request["limits"]
    _limit_child(limits)
    try:
        book = _Book(request["source"], request["file_name"], limits)
        spec: HeaderSpec = request["spec"]
        if request["mode"] == "first":
            names = book.sheet_names
            sheet = request["sheet"]
            preferred = request["preferred"] or ""
            chosen = sheet if sheet in names else next(
                (n for n in names if n.strip().casefold() == preferred.casefold()), names[0] if names else "")
            headers: list[str] = []
            if chosen:
                for cells in book.rows(chosen)[0]:
                    if not is_blank(cells):
                        headers = [_header_text(c) for c in cells[: limits.max_columns]]
                        break
            _send(stdout, ("first", names, chosen, headers))
            return 0
        chosen = choose_sheet(book, spec, request["sheet"], request["preferred"], request["fallback_first"])
        table = read_sheet(book, chosen, spec, request["columns"])
        width = max(table.mapping.values()) + 1
        _send(stdout, ("table", book.sheet_names, table.sheet, table.header_row, table.headers[: limits.max_columns],
                       table.mapping, table.first_row, table.height))
        chunk: list[list] = []
        for cells in table.rows:
            chunk.append(cells[:width] if len(cells) >= width else [*cells, *[""] * (width - len(cells))])
            if len(chunk) >= request["chunk"]:
                _send(stdout, ("rows", chunk))
                chunk = []
        _send(stdout, ("rows", chunk))
        _send(stdout, ("end",))
    except WorkbookRefused as exc:
        _send(stdout, ("refused", str(exc)))
    except InputError as exc:
        _send(stdout, ("input", str(exc)))
    except MemoryError:
        _send(stdout, ("memory",))
    except BrokenPipeError:  # the caller stopped reading (it had what it needed)
        return 0
    return 0


# --- the caller's side ------------------------------------------------------------------------------------------

class _SafeUnpickler(pickle.Unpickler):
    """Only the classes a cell can be: the child's answers are data, never code."""

    ALLOWED = {("datetime", "date"), ("datetime", "datetime"), ("datetime", "time"), ("datetime", "timedelta"),
               ("lib.excel_reader", "CellError")}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not a cell value")


class _Reader:
    """One child process reading one file; messages are read with a deadline, the child is always reaped."""

    def __init__(self, source: Path | str | bytes, file_name: str | None, limits: ReadLimits):
        if isinstance(source, bytes):
            self.file_name = file_name or "upload"
            check_size(len(source), limits.max_file_mb)
            payload: str | bytes = source
        else:
            path = Path(source)
            self.file_name = file_name or path.name
            if path.is_dir():
                raise WorkbookRefused(f"{self.file_name}: is a directory, not an Excel file")
            if not path.is_file():
                raise WorkbookRefused(f"{self.file_name}: no such file")
            check_size(path.stat().st_size, limits.max_file_mb)
            payload = str(path.resolve())
        self.limits = limits
        self.payload = payload
        self.process: subprocess.Popen | None = None

    def start(self, **request) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
               "RUST_BACKTRACE": "0"}
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "lib.excel_child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=str(ROOT), close_fds=True)
        data = pickle.dumps({"source": self.payload, "file_name": self.file_name, "limits": self.limits, **request},
                            protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.process.stdin.write(data)
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        self._buffer = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.process.stdout, selectors.EVENT_READ)

    def _child_cpu(self) -> float | None:
        """The child's CPU seconds so far (Linux /proc), or None where that cannot be read."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def _read_exactly(self, size: int) -> bytes | None:
        """Read `size` bytes of the child's answer. The child's CPU time is limited in the child itself; here a
        child that neither answers nor uses CPU for IMPORT_READ_SECONDS is taken as hung (a busy host only
        slows it down). Where CPU time cannot be read, the wait is bounded by twice the limit plus 30 s."""
        fd = self.process.stdout.fileno()
        started = idle_since = time.monotonic()
        cpu = self._child_cpu()
        while len(self._buffer) < size:
            if not self._selector.select(min(5.0, self.limits.seconds)):
                now, used = time.monotonic(), self._child_cpu()
                if used is not None and cpu is not None and used > cpu:
                    cpu, idle_since = used, now
                hung = (now - idle_since if used is not None else now - started - self.limits.seconds - 30)
                if hung > self.limits.seconds:
                    self.close()
                    raise WorkbookRefused(f"file refused: {self.file_name}: the reader stopped making progress for "
                                          f"{self.limits.seconds} s (IMPORT_READ_SECONDS)")
                continue
            data = os.read(fd, 1 << 20)
            if not data:
                return None
            self._buffer += data
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def receive(self) -> tuple:
        """The child's next message; a child that died or overran its limits becomes WorkbookRefused."""
        head = self._read_exactly(8)
        body = self._read_exactly(struct.unpack("<Q", head)[0]) if head is not None else None
        if body is None:
            raise self._died()
        message = _SafeUnpickler(io.BytesIO(body)).load()
        kind = message[0]
        if kind == "refused":
            self.close()
            raise WorkbookRefused(message[1])
        if kind == "input":
            self.close()
            raise InputError(message[1])
        if kind == "memory":
            self.close()
            raise self._memory_refusal()
        return message

    def _memory_refusal(self) -> WorkbookRefused:
        return WorkbookRefused(f"file refused: {self.file_name}: reading it needs more than "
                               f"{self.limits.memory_mb} MB of memory (IMPORT_READ_MEMORY_MB)")

    def _died(self) -> WorkbookRefused:
        process = self.process
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        error = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
        self.close()
        code = process.returncode
        if "memory allocation" in error or "MemoryError" in error or code == -signal.SIGABRT:
            return self._memory_refusal()
        if code in (-signal.SIGXCPU, -signal.SIGKILL):
            return WorkbookRefused(f"file refused: {self.file_name}: reading it took more than "
                                   f"{self.limits.seconds} s of CPU (IMPORT_READ_SECONDS)")
        last = next((line.strip() for line in reversed(error.splitlines()) if line.strip()), f"exit code {code}")
        return WorkbookRefused(f"file refused: {self.file_name}: the reader stopped ({last[:200]})")

    def close(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe:
                pipe.close()
        self._selector.close()

    def rows(self) -> Iterator[list]:
        """The rows the child sends, a chunk at a time; the child is reaped at the end or when abandoned."""
        try:
            while True:
                message = self.receive()
                if message[0] == "end":
                    return
                yield from message[1]
        finally:
            self.close()


def read_table(source: Path | str | bytes, spec: HeaderSpec, *, file_name: str | None = None,
               sheet: str | None = None, preferred: str | None = None, columns: dict[str, int | None] | None = None,
               fallback_first: bool = False, limits: ReadLimits | None = None,
               chunk: int = CHUNK_ROWS) -> tuple[list[str], SheetTable]:
    """The sheet names and the chosen sheet's table, read in a child process; rows come as they are consumed,
    each cut after the last mapped column. Raises WorkbookRefused / InputError with the one-line reason."""
    reader = _Reader(source, file_name, limits or ReadLimits.from_settings())
    reader.start(mode="table", spec=spec, sheet=sheet, preferred=preferred, columns=columns,
                 fallback_first=fallback_first, chunk=chunk)
    try:
        _kind, names, chosen, header_row, headers, mapping, first_row, height = reader.receive()
    except BaseException:
        reader.close()
        raise
    return names, SheetTable(chosen, header_row, headers, mapping, reader.rows(), first_row, height)


def read_first_row(source: Path | str | bytes, spec: HeaderSpec, *, file_name: str | None = None,
                   sheet: str | None = None, preferred: str | None = None,
                   limits: ReadLimits | None = None) -> tuple[list[str], str, list[str]]:
    """The sheet names, the sheet shown (`sheet`, else `preferred`, else the first) and its first non-blank
    row's texts: for mapping columns by hand when no header was recognised."""
    reader = _Reader(source, file_name, limits or ReadLimits.from_settings())
    reader.start(mode="first", spec=spec, sheet=sheet, preferred=preferred)
    try:
        _kind, names, chosen, headers = reader.receive()
    finally:
        reader.close()
    return names, chosen, headers
