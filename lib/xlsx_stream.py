"""Read a worksheet's rows straight from its XML in the zip, a block at a time: memory follows the block.

python-calamine loads a whole sheet before it hands over the first row (≈ 1 GB for a million-row export);
this reader decompresses the worksheet 1 MB at a time, cuts the text after the last complete row and turns
those rows into the values calamine gives for the same cells (`tests/test_xlsx_stream.py` reads the same files
both ways): numbers as floats, date-formatted numbers as date / datetime / time / timedelta (the cell's style
→ its number format, as calamine decides it), booleans, shared, inline and formula strings, error cells as
`CellError`. Only the shared strings are held whole (the workbook's uncompressed size is capped before this
runs). It runs in the reading child only (lib.excel_reader).
"""

from __future__ import annotations

import math
import re
import zipfile
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from html import unescape

from lib.excel_reader import column_index

BLOCK_BYTES = 1 << 20
MAX_ELEMENT_BYTES = 64 << 20  # one row (or shared string) this long is not an export's: refused, not buffered
_EPOCH = datetime(1899, 12, 30)
_EPOCH_1904 = datetime(1904, 1, 1)
_MAX_MS = 2**63 - 1
_CHRONO_MIN_MS = -96_439_723 * 86_400_000  # the days calamine's date library holds, from 1899-12-30 (measured)
_CHRONO_MAX_MS = 95_052_171 * 86_400_000 - 1
_BUILTIN_DATES = {14, 15, 16, 17, 18, 19, 20, 21, 22, 45, 47}
_BUILTIN_DURATIONS = {46}

_P = rb"(?:[\w.-]+:)?"  # an element's namespace prefix, if the writer used one
# a row; the usual cell as Excel and openpyxl write it (a value or an inline string); any other cell, whose
# content may not run into the next cell or row (an unclosed <c> is skipped, never read to the next </c>)
_ROW_OR_CELL = re.compile(
    rb'<(?:' + _P + rb'(row)\b(?:\s+r="([0-9]{1,9})")?([^>]*)>'
    rb'|c r="([A-Z]{1,3})[0-9]{1,7}"(?: s="([0-9]{1,9})")?(?: t="([a-zA-Z]{1,9})")?>'
    rb'(?:<v>([^<]*)</v>|<is><t>([^<]*)</t></is>)</c>'
    rb'|' + _P + rb'c\b([^>]*?)(?:/>|>((?:[^<]|<(?!/?' + _P + rb'(?:c|row)\b))*)</' + _P + rb'c>))', re.S)
_groups = re.Match.groups
_ROW_NUMBER = re.compile(rb"""\br\s*=\s*["']([0-9]{1,9})["']""")
_ATTR = re.compile(rb"""([\w:.-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_REF = re.compile(rb"([A-Za-z]{1,3})([0-9]{1,7})")
_VALUE = re.compile(rb"<" + _P + rb"v\b[^>]*?(?:/>|>(.*?)</" + _P + rb"v>)", re.S)
_TEXT = re.compile(rb"<" + _P + rb"t\b[^>]*?(?:/>|>(.*?)</" + _P + rb"t>)", re.S)
_PHONETIC = re.compile(rb"<" + _P + rb"rPh\b.*?</" + _P + rb"rPh>", re.S)
_SI = re.compile(rb"<" + _P + rb"si\b[^>]*?(?:/>|>((?:[^<]|<(?!/?" + _P + rb"si\b))*)</" + _P + rb"si>)", re.S)
_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")
_SHEET_DATA_END = re.compile(rb"</" + _P + rb"sheetData>")


class SheetStructureError(ValueError):
    """The worksheet XML is not what a worksheet looks like (the caller turns it into a refusal)."""


def _bounded(tail: bytes, what: str) -> bytes:
    """The unfinished element carried to the next block, refused when it passes MAX_ELEMENT_BYTES."""
    if len(tail) > MAX_ELEMENT_BYTES:
        raise SheetStructureError(f"a {what} longer than {MAX_ELEMENT_BYTES >> 20} MB")
    return tail


def _attributes(text: bytes) -> dict[bytes, bytes]:
    return {name.rsplit(b":", 1)[-1]: a if a is not None else b for name, a, b in _ATTR.findall(text)}


def xml_text(raw: bytes) -> str:
    """Element text as calamine gives it: XML entities and Excel's _xHHHH_ escapes resolved."""
    text = raw.decode("utf-8", "replace")
    if "&" in text:
        text = unescape(text)
    if "_x" in text:
        text = _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text


def _rich_text(content: bytes) -> str:
    """The text of an <si> or <is>: its <t>, or its runs' <t>s joined (phonetic hints left out)."""
    if b"rPh" in content:
        content = _PHONETIC.sub(b"", content)
    parts = _TEXT.findall(content)
    if len(parts) == 1:
        return xml_text(parts[0])
    return "".join(map(xml_text, parts))


def shared_strings(archive: zipfile.ZipFile, name: str = "xl/sharedStrings.xml") -> list[str]:
    """The workbook's shared strings, read a block at a time ([] when it has none). Read at the usual name, as
    python-calamine reads them; a cell pointing past them refuses the sheet in both readers."""
    try:
        stream = archive.open(name)
    except KeyError:
        return []
    out: list[str] = []
    tail = b""
    with stream:
        while True:
            data = stream.read(BLOCK_BYTES)
            buf = tail + data
            cut = len(buf) if not data else buf.rfind(b"si>") + 3
            if cut < 3:
                cut = 0
            out.extend(_rich_text(content or b"") for content in _SI.findall(buf, 0, cut))
            tail = _bounded(buf[cut:], "shared string")
            if not data:
                return out


def is_date_format(code: str) -> str | None:
    """'date' or 'duration' when a number format shows a date/time (or an elapsed time), else None.

    calamine's rule, so both readers agree: the first section only; quoted text, escaped characters and
    [colour]/[locale] brackets do not count; d, m, h, y, s (or a/p after an 'a') make it a date, a bracketed
    [h], [m] or [s] an elapsed time."""
    escaped = quoted = ampm = hms = False
    brackets = 0
    prev = " "
    for ch in code:
        if escaped:
            escaped = False
        elif ch in "_\\":
            escaped = True
        elif quoted:
            if ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == ";":
            return None
        elif ch == "[":
            brackets += 1
        elif ch == "]" and brackets == 1 and hms:
            return "duration"
        elif ch == "]":
            brackets = max(brackets - 1, 0)
        elif ch in "aA" and not ampm and brackets == 0:
            ampm = True
        elif ch in "pmP/M" and ampm and brackets == 0:
            return "date"
        elif ch in "dmhysDMHYS" and not ampm and brackets == 0:
            return "date"
        elif not (hms and ch.lower() == prev.lower()):
            hms = prev == "[" and ch in "mhsMHS"
        prev = ch
    return None


def date_styles(archive: zipfile.ZipFile, name: str = "xl/styles.xml") -> dict[int, str]:
    """Cell style index → 'date' / 'duration' for the styles whose number format shows one."""
    try:
        xml = archive.read(name)
    except KeyError:
        return {}
    formats: dict[int, str] = {}
    for match in re.finditer(rb"<" + _P + rb"numFmt\b([^>]*)", xml):
        attrs = _attributes(match.group(1))
        try:
            kind = is_date_format(xml_text(attrs.get(b"formatCode", b"")))
            if kind:
                formats[int(attrs.get(b"numFmtId", b"-1"))] = kind
        except ValueError:
            continue
    section = re.search(rb"<" + _P + rb"cellXfs\b.*?</" + _P + rb"cellXfs>", xml, re.S)
    out: dict[int, str] = {}
    if section:
        for index, match in enumerate(re.finditer(rb"<" + _P + rb"xf\b([^>]*)", section.group(0))):
            try:
                number_format = int(_attributes(match.group(1)).get(b"numFmtId", b"0"))
            except ValueError:
                continue
            kind = formats.get(number_format) or (
                "date" if number_format in _BUILTIN_DATES else "duration" if number_format in _BUILTIN_DURATIONS
                else None)
            if kind:
                out[index] = kind
    return out


def uses_1904(archive: zipfile.ZipFile) -> bool:
    try:
        book = archive.read("xl/workbook.xml")
    except KeyError:
        return False
    match = re.search(rb"""date1904\s*=\s*["'](1|true)["']""", book)
    return match is not None


class Unreadable(Exception):  # noqa: N818 - a signal inside this module, not an error for callers
    """A date serial so far out that calamine cannot convert it (it panics): the row becomes unreadable."""


def _rust_round(x: float) -> int:
    """Half away from zero, as Rust's f64::round (Python's round() goes to even: 0.5 ms apart at times)."""
    if x < 0:
        return -_rust_round(-x)
    whole = math.floor(x)
    return whole + 1 if x - whole >= 0.5 else whole  # x + 0.5 itself would round where floats are 1 apart


def serial_value(value: float, kind: str, is_1904: bool) -> object:
    """A date-formatted number as python-calamine returns it: its rounding to milliseconds and 1900 leap-year
    quirk; a time of day for serials under 1; a date for whole serials, else a datetime; the number itself
    when the day is outside what it can represent (years 1–9999 in Python, ±262,143 in its date library)."""
    if kind == "duration":
        ms = _rust_round(value * 86_400_000)
        if abs(ms) > _MAX_MS:
            raise Unreadable
        try:
            return timedelta(milliseconds=ms)
        except OverflowError:
            return value
    days = value if is_1904 or value >= 60 else value + 1
    ms = days * 86_400_000
    if ms != ms:
        return value
    if ms <= -_MAX_MS:  # calamine's conversion panics here (the row becomes unreadable)
        raise Unreadable
    ms = min(_rust_round(ms), _MAX_MS)
    if not _CHRONO_MIN_MS <= ms <= _CHRONO_MAX_MS:
        return value
    if value < 1 and not is_1904:
        return (datetime.min + timedelta(milliseconds=ms % 86_400_000)).time()
    try:
        moment = (_EPOCH_1904 if is_1904 else _EPOCH) + timedelta(milliseconds=ms)
    except OverflowError:
        return value
    return moment.date() if value == int(value) else moment


def _iso_value(text: str) -> object:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return time.fromisoformat(text)
        except ValueError:
            return text
    if "T" not in text and " " not in text and len(text) <= 10:
        return moment.date()
    return moment


_LETTERS: dict[bytes, int] = {}


def _column(letters: bytes) -> int:
    index = _LETTERS.get(letters)  # cached: this runs for every cell
    if index is None:
        index = column_index(letters.decode("ascii"))
        if len(_LETTERS) < 20000:
            _LETTERS[letters] = index
    return index


def stream_sheet(archive: zipfile.ZipFile, part: str, strings: list[str], styles: dict[int, str],
                 is_1904: bool, max_columns: int, width: int = 0, error_type: type = str,
                 unreadable: str = "#UNREADABLE") -> Iterator[list]:
    """The sheet's rows from Excel row 1, each from column A to its last cell and at least `width` long (gaps
    as ""); rows without cells between used rows as blank rows; trailing empty rows left out, as calamine
    does. Cells at column `max_columns` or beyond are not returned (the structure scan refused such a sheet
    already). A row with a date serial calamine cannot convert is all `unreadable` error cells."""
    yielded = last_row = 0
    tail = b""
    started = False
    with archive.open(part) as stream:
        while True:
            data = stream.read(BLOCK_BYTES)
            buf = tail + data
            if not started:
                at = buf.find(b"sheetData")
                if at < 0:
                    tail = buf[-64:] if data else b""
                    if not data:
                        return
                    continue
                buf = buf[buf.find(b">", at) + 1 :] if buf.find(b">", at) >= 0 else buf
                started = True
            end = _SHEET_DATA_END.search(buf)
            if end is not None:
                buf, data = buf[: end.start()], b""
            if data:
                cut = buf.rfind(b"row>") + 4
                if cut < 4:
                    tail = _bounded(buf, "row")
                    continue
                buf, tail = buf[:cut], buf[cut:]
            for number, cells in _rows(buf, strings, styles, is_1904, max_columns, width, error_type, unreadable,
                                       last_row + 1):
                if number <= last_row:
                    raise SheetStructureError(f"row {number} comes after row {last_row}")
                if not cells:  # a row element without values: blank, unless a later row has some
                    last_row = number
                    continue
                for _ in range(number - yielded - 1):
                    yield [""] * width
                yielded = last_row = number
                if len(cells) < width:
                    cells.extend([""] * (width - len(cells)))
                yield cells
            if not data:
                return


def _rows(buf: bytes, strings: list[str], styles: dict[int, str], is_1904: bool, max_columns: int, width: int,
          error_type: type, unreadable: str, next_row: int) -> Iterator[tuple[int, list]]:
    """(Excel row number, cells) for the complete rows in `buf`."""
    row_number = next_row - 1
    cells: list | None = None
    column = -1
    bad = False
    column_of = _LETTERS
    for (is_row, row_ref, row_attrs, letters, style, kind, number, inline, attrs,
         content) in map(_groups, _ROW_OR_CELL.finditer(buf)):
        if is_row:
            if cells is not None:
                yield row_number, ([error_type(unreadable)] * max(len(cells), width, 1) if bad else cells)
            if row_ref is not None:
                row_number = int(row_ref)
            else:
                found = _ROW_NUMBER.search(row_attrs)
                row_number = int(found.group(1)) if found else row_number + 1
            cells, column, bad = [], -1, False
            if row_attrs.endswith(b"/"):
                yield row_number, cells
                cells = None
            continue
        if cells is None:  # a cell outside a row: not a worksheet as Excel writes it
            continue
        if letters is not None:  # the usual cell: <c r="B7" s="1" t="n"><v>…</v></c> or an inline string
            column = column_of.get(letters)
            if column is None:
                column = _column(letters)
            if inline is not None:
                if kind != b"inlineStr":
                    continue
                value = inline.decode("utf-8", "replace") if b"&" not in inline and b"_x" not in inline else xml_text(inline)
            elif kind is None or kind == b"n":
                try:
                    value = float(number)
                except ValueError:
                    continue
                if (style is not None and styles and int(style) in styles) or value - value != 0:
                    value = _number(value, style, styles, is_1904, error_type)
                    if value is _BAD:
                        bad, value = True, ""
            elif kind == b"s":
                try:
                    value = strings[int(number)]
                except (ValueError, IndexError):
                    raise SheetStructureError(f"cell string index {number[:20]!r} not in the shared strings") from None
            else:
                value = _value(number, kind, style, b"<v>" + number + b"</v>", strings, styles, is_1904,
                               error_type)
        else:
            named = _attributes(attrs)
            ref = _REF.fullmatch(named.get(b"r", b""))
            column = _column(ref.group(1)) if ref else column + 1
            if content is None:
                continue
            raw = None
            found = _VALUE.search(content)
            if found is not None:
                raw = found.group(1) or b""
            try:
                value = _value(raw, named.get(b"t"), named.get(b"s"), content, strings, styles, is_1904, error_type)
            except Unreadable:
                bad, value = True, ""
        if column >= max_columns or (value.__class__ is str and value == ""):
            continue
        if column >= len(cells):
            if column > len(cells):
                cells.extend([""] * (column - len(cells)))
            cells.append(value)
        else:
            cells[column] = value
    if cells is not None:
        yield row_number, ([error_type(unreadable)] * max(len(cells), width, 1) if bad else cells)


_BAD = object()


def _number(value: float, style: bytes | None, styles: dict[int, str], is_1904: bool, error_type: type) -> object:
    if value != value or value - value != 0:  # NaN or infinity: calamine's wrapper reports #NUM!
        return error_type("#NUM!")
    date_kind = styles.get(int(style)) if style is not None else None
    if date_kind is None:
        return value
    try:
        return serial_value(value, date_kind, is_1904)
    except Unreadable:
        return _BAD


def _value(raw: bytes | None, kind: bytes | None, style: bytes | None, content: bytes, strings: list[str],
           styles: dict[int, str], is_1904: bool, error_type: type) -> object:
    if kind is None or kind == b"n":
        if raw is None:
            return ""
        try:
            number = float(raw)
        except ValueError:
            return ""
        if number != number or number in (float("inf"), float("-inf")):
            return error_type("#NUM!")
        date_kind = styles.get(int(style)) if style is not None and style.isdigit() and styles else None
        return serial_value(number, date_kind, is_1904) if date_kind else number
    if kind == b"s":
        if raw is None:
            return ""
        try:
            return strings[int(raw)]
        except (ValueError, IndexError):
            raise SheetStructureError(f"cell string index {raw[:20]!r} not in the shared strings") from None
    if kind == b"inlineStr":
        found = re.search(rb"<" + _P + rb"is\b[^>]*>(.*?)</" + _P + rb"is>", content, re.S)
        return _rich_text(found.group(1)) if found else ""
    if kind == b"str":
        return xml_text(raw) if raw is not None else ""
    if kind == b"b":
        return raw is not None and raw.strip() in (b"1", b"true")
    if kind == b"e":
        text = xml_text(raw).strip() if raw is not None else ""
        return error_type(text if text.startswith("#") else "#ERROR")
    if kind == b"d":
        return _iso_value(xml_text(raw).strip()) if raw is not None else ""
    return xml_text(raw) if raw is not None else ""


def dimension_width(archive: zipfile.ZipFile, part: str, max_columns: int) -> int:
    """The width the sheet's <dimension> states (at most `max_columns`; 0 when it states none)."""
    with archive.open(part) as stream:
        head = stream.read(4096)
    found = re.search(rb"""<""" + _P + rb"""dimension\b[^>]*\bref\s*=\s*["'][A-Za-z]*[0-9]*:?([A-Za-z]{1,3})""",
                      head)
    return min(_column(found.group(1)) + 1, max_columns) if found else 0

