"""The streaming sheet reader (lib.xlsx_stream) gives what python-calamine gives, and keeps memory to the block.

Every comparison reads the same file twice through the reading child (lib.excel_reader.read_table): once with
IMPORT_STREAM_FROM_ROWS above the sheet's length (python-calamine), once at 0 (streamed).
"""

from __future__ import annotations

import dataclasses
import io
import random
import zipfile
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from openpyxl import Workbook

from lib.errors import InputError
from lib.excel_reader import ReadLimits, WorkbookRefused, read_table
from lib.subscription_rows import HEADER_SPEC, PREFERRED_SHEET, read_export
from lib.xlsx_stream import is_date_format
from tests.test_excel_reader import DANISH_HEADER, sample

CALAMINE = ReadLimits(stream_from_rows=10**9)
STREAMED = ReadLimits(stream_from_rows=0)


def read_both(source: Path | bytes, **kwargs) -> tuple[tuple, tuple]:
    """(sheet names, table fields, rows, cell types) read by python-calamine and by the streaming reader.

    The table's height (for progress bars) is left out: the streaming reader knows it from the structure scan,
    which also counts empty row elements after the last cell, which calamine leaves out."""
    out = []
    for limits in (CALAMINE, STREAMED):
        names, table = read_table(source, HEADER_SPEC, preferred=PREFERRED_SHEET, limits=limits,
                                  file_name="export.xlsx", **kwargs)
        rows = list(table.rows)
        out.append((names, (table.sheet, table.header_row, table.headers, table.mapping, table.first_row), rows, [[type(v).__name__ for v in row] for row in rows]))
    return out[0], out[1]


@pytest.mark.parametrize("name", ["abonnementer-clean.xlsx", "abonnementer-messy.xlsx"])
def test_the_real_samples_read_the_same_both_ways(name):
    calamine, streamed = read_both(sample(name))
    assert streamed == calamine
    assert len(calamine[2]) >= 5


def _sheet_xml(rows: str, dimension: str = "A1:M20") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="http://schemas.openxmlformats.'
            f'org/spreadsheetml/2006/main"><dimension ref="{dimension}"/><sheetData>{rows}</sheetData></worksheet>'
            ).encode()


def workbook_with_sheet(sheet_xml: bytes, shared: list[str] | None = None, styles_xml: bytes | None = None) -> bytes:
    """A minimal .xlsx around one hand-written worksheet (as other writers than Excel produce them)."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    members = {
        "[Content_Types].xml": (
            b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            b'<Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" '
            b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>'),
        "_rels/.rels": (
            b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
            b'Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" '
            b'Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets><sheet name="Abonnementer" '
                           f'sheetId="1" r:id="rId1"/></sheets></workbook>'.encode(),
        "xl/_rels/workbook.xml.rels": (
            b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship '
            b'Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
            b'Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/'
            b'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/><Relationship Id="rId3" '
            b'Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
            b'Target="styles.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": sheet_xml,
        "xl/styles.xml": styles_xml or (
            f'<styleSheet xmlns="{main}"><numFmts count="2"><numFmt numFmtId="164" formatCode="dd-mm-yyyy"/>'
            f'<numFmt numFmtId="165" formatCode="&quot;kr.&quot; #,##0.00"/></numFmts><cellXfs count="5">'
            f'<xf numFmtId="0"/><xf numFmtId="164"/><xf numFmtId="165"/><xf numFmtId="14"/><xf numFmtId="46"/>'
            f'</cellXfs></styleSheet>').encode(),
    }
    strings = shared or []
    members["xl/sharedStrings.xml"] = (f'<sst xmlns="{main}" count="{len(strings)}">'
                                       + "".join(f"<si>{s}</si>" for s in strings) + "</sst>").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


HEADER_CELLS = "".join(f'<c r="{chr(65 + i)}1" t="inlineStr"><is><t>{h}</t></is></c>'
                       for i, h in enumerate(DANISH_HEADER))


def test_cells_of_every_kind_read_the_same_both_ways():
    """Shared strings (plain, rich text, entities, _xHHHH_ escapes, phonetic hints), inline and formula strings,
    booleans, error cells, numbers styled as dates (built-in and custom formats, serial 0 and under 60, times,
    an elapsed-time format), as money, unstyled, NaN, and cells and rows written without references."""
    shared = ["<t>Produkt A</t>", "<r><t>Pro</t></r><r><rPr><b/></rPr><t xml:space=\"preserve\">dukt B </t></r>",
              "<t>Bl&amp;Co &lt;x&gt; &#229;</t>", "<t>Tab_x0009_her</t>", "<t>Ord</t><rPh sb=\"0\" eb=\"1\"><t>x</t></rPh>"]
    rows = [f'<row r="1">{HEADER_CELLS}</row>']
    values = [
        ('<c r="G{n}"><v>12</v></c>', '<c r="J{n}" s="1"><v>45292</v></c>'),
        ('<c r="G{n}"><v>1.5</v></c>', '<c r="J{n}" s="3"><v>45292.75</v></c>'),
        ('<c r="G{n}" t="n"><v>-3</v></c>', '<c r="J{n}" s="1"><v>0</v></c>'),
        ('<c r="G{n}"><v>1E+26</v></c>', '<c r="J{n}" s="1"><v>59</v></c>'),
        ('<c r="G{n}" t="b"><v>1</v></c>', '<c r="J{n}" s="1"><v>60.5</v></c>'),
        ('<c r="G{n}" t="e"><v>#DIV/0!</v></c>', '<c r="J{n}" s="4"><v>1.25</v></c>'),
        ('<c r="G{n}" t="str"><f>A1</f><v>x &amp; y</v></c>', '<c r="J{n}" s="1"><v>3000000</v></c>'),
        ('<c r="G{n}"><v>NaN</v></c>', '<c r="J{n}" s="1"><v>-5</v></c>'),
        ('<c r="G{n}" s="2"><v>89.5</v></c>', '<c r="J{n}" s="1"><v>45292.123456789</v></c>'),
        ('<c r="G{n}"/>', '<c r="J{n}" t="inlineStr"><is><r><t>01-</t></r><r><t>02-2024</t></r></is></c>'),
    ]
    for i, (quantity, start) in enumerate(values):
        n = i + 2
        product = f'<c r="E{n}" t="s"><v>{i % len(shared)}</v></c>'
        rows.append(f'<row r="{n}"><c r="A{n}"><v>{1000 + i}</v></c>{product}{quantity.format(n=n)}'
                    f'{start.format(n=n)}</row>')
    rows.append('<row r="14"/>')  # an empty row element between rows: blank
    rows.append('<row><c r="A15"><v>7</v></c><c><v>8</v></c><c r="E15" t="s"><v>0</v></c>'
                '<c r="G15"><v>1</v></c><c r="J15" s="1"><v>45300</v></c></row>')  # no row number; a cell without r
    rows.append('<row r="17" spans="1:13" ht="15"><c s="0" t="s" r="E17"><v>1</v></c><c t="n" r="G17"><v>2</v></c>'
                '<c r="J17" s="1"><v>45301</v></c><c r="A17"><v>1001</v></c></row>')  # attributes in any order
    rows.append('<row r="18"><c r="A18"><v>1002</v></c><c r="E18" t="s"><v>0</v></c><c r="G18" s="x"><v>3</v></c>'
                '<c r="J18" s="1"><v>45302</v></c></row>')  # a style that is no number: no style
    rows.append('<row r="30"/>')  # trailing empty rows are not rows
    source = workbook_with_sheet(_sheet_xml("".join(rows)), shared)
    calamine, streamed = read_both(source)
    assert streamed == calamine
    assert any(date(1900, 2, 28) in row for row in calamine[2])  # the cases above did reach calamine's dates
    assert any(isinstance(v, time) for row in calamine[2] for v in row)
    assert any(isinstance(v, timedelta) for row in calamine[2] for v in row)


def test_a_generated_export_reads_the_same_both_ways(tmp_path):
    """openpyxl's shared strings and styles, with random messy cells, as a person's export would have."""
    rng = random.Random(5)
    wb = Workbook()
    ws = wb.active
    ws.title = "Abonnementer"
    ws.append(["Titel"])
    ws.append([])
    ws.append(DANISH_HEADER)
    kinds = [lambda: rng.randrange(10**6), lambda: rng.uniform(-1e6, 1e6), lambda: f"tekst {rng.randrange(50)}",
             lambda: date(2020, 1, 1) + timedelta(days=rng.randrange(2000)), lambda: None, lambda: True,
             lambda: datetime(2024, 1, 1, rng.randrange(24), rng.randrange(60)), lambda: "#N/A", lambda: "",
             lambda: "Ærø & Søn <ApS>", lambda: rng.choice([0, 1, 59, 60, 61]) * 1.0]
    for _ in range(600):
        ws.append([rng.choice(kinds)() for _ in DANISH_HEADER])
    for row in ws.iter_rows(min_row=4, max_row=50, min_col=10, max_col=10):
        for cell in row:
            if isinstance(cell.value, int | float) and not isinstance(cell.value, bool):
                cell.number_format = rng.choice(["dd-mm-yyyy", "0.00", "yyyy-mm-dd hh:mm", "[h]:mm", "General"])
    path = tmp_path / "generated.xlsx"
    wb.save(path)
    calamine, streamed = read_both(path)
    assert streamed == calamine
    assert len(calamine[2]) == 600


def test_the_validated_rows_are_the_same_both_ways(tmp_path, monkeypatch):
    """What the import makes of the rows (values and every reason) does not depend on the reader."""
    monkeypatch.setenv("IMPORT_STREAM_FROM_ROWS", str(10**9))
    first = read_export(sample("abonnementer-messy.xlsx"))
    monkeypatch.setenv("IMPORT_STREAM_FROM_ROWS", "0")
    second = read_export(sample("abonnementer-messy.xlsx"))
    assert [(r.row, r.values, r.error) for r in second.rows] == [(r.row, r.values, r.error) for r in first.rows]
    assert any(r.error for r in first.rows)


@pytest.mark.parametrize(("code", "kind"), [
    ("dd-mm-yyyy", "date"), ("General", None), ("0.00", None), ('"kr." #,##0.00', None), ("[h]:mm:ss", "duration"),
    ("h:mm AM/PM", "date"), ("#,##0.00\\ _M\"H\"_);[Red]#,##0.00", None), ("[$-406]d. mmmm yyyy", "date"),
    ('\\Y000000', None), ("[Red][h]:mm", "duration"), ("yyyy-mm-dd;@", "date")])
def test_date_formats_are_recognised_as_calamine_does(code, kind):
    assert is_date_format(code) == kind


def test_a_long_sheet_is_streamed_within_a_memory_limit_calamine_exceeds(tmp_path):
    """200,000 rows under a 150 MB address-space limit: python-calamine (which holds the whole sheet) is refused
    for memory, the streaming reader reads every row."""
    rows = "".join(
        f'<row r="{n}"><c r="A{n}"><v>{1000 + n % 900}</v></c><c r="B{n}" t="inlineStr"><is><t>Kunde {n} ApS</t></is>'
        f'</c><c r="D{n}" t="inlineStr"><is><t>{600000 + n}</t></is></c><c r="E{n}" t="inlineStr"><is><t>Produkt '
        f'{n % 60}</t></is></c><c r="G{n}"><v>{n % 20 + 1}</v></c><c r="H{n}"><v>{n % 997}.5</v></c><c r="J{n}" '
        f's="1"><v>{44000 + n % 2000}</v></c><c r="L{n}" t="inlineStr"><is><t>Aktiv</t></is></c></row>'
        for n in range(2, 200_002))
    path = tmp_path / "long.xlsx"
    path.write_bytes(workbook_with_sheet(_sheet_xml(f'<row r="1">{HEADER_CELLS}</row>' + rows, "A1:M200001")))
    small = dataclasses.replace(ReadLimits(), memory_mb=150)
    with pytest.raises(WorkbookRefused, match="IMPORT_READ_MEMORY_MB"):
        _names, table = read_table(path, HEADER_SPEC, limits=dataclasses.replace(small, stream_from_rows=10**9))
        list(table.rows)
    _names, table = read_table(path, HEADER_SPEC, limits=dataclasses.replace(small, stream_from_rows=100_000))
    count = last = 0
    for count, last in enumerate(table.rows, 1):  # noqa: B007 - the last row is checked below
        pass
    assert count == 200_000
    assert last[:2] == [1000 + 200_001 % 900, "Kunde 200001 ApS"]
    assert last[9] == date(1899, 12, 30) + timedelta(days=44000 + 200_001 % 2000)


def test_an_unclosed_cell_is_skipped_not_read_into_the_next_rows():
    """A cell without its </c> would otherwise swallow everything up to the next row's </c> (and with none
    after it, make every later cell search the rest of the block)."""
    cells = "".join(f'<c r="A{n}" t="str"><v>1</v>' for n in range(2, 2000))
    xml = _sheet_xml(f'<row r="1">{HEADER_CELLS}</row><row r="2">{cells}</row><row r="3"><c r="A3"><v>7</v></c>'
                     '<c r="E3" t="inlineStr"><is><t>Produkt</t></is></c></row>')
    _names, table = read_table(workbook_with_sheet(xml), HEADER_SPEC, limits=STREAMED)
    assert [row[:5] for row in table.rows] == [["", "", "", "", ""], [7.0, "", "", "", "Produkt"]]


def test_a_cell_pointing_past_the_shared_strings_is_refused_by_both_readers():
    xml = _sheet_xml(f'<row r="1">{HEADER_CELLS}</row><row r="2"><c r="A2"><v>7</v></c><c r="E2" t="s"><v>5</v></c>'
                     '</row>')
    for limits in (CALAMINE, STREAMED):
        with pytest.raises(InputError, match="cannot be read"):
            _names, table = read_table(workbook_with_sheet(xml, ["<t>Produkt</t>"]), HEADER_SPEC, limits=limits)
            list(table.rows)


def test_random_date_serials_read_the_same_both_ways():
    """Date, date-time and elapsed-time formats over serials from −1e300 to 1e300: calamine's rounding to the
    millisecond (half away from zero), its time of day under 1, its date for whole serials, its number where the
    day is out of reach, and a row it cannot convert at all."""
    rng = random.Random(11)
    edges = [1e15, -1e15, 2958465.9999999, 2958466, -693594, -693595.5, 1e300, -1e300, 59.9999999, 60.00000001,
             -96439724.0, -96439724.00000001, -96439723.5, 1e12, -1e12, 0.0, 1.0, 0.5]
    values = [*edges, *(rng.choice([rng.uniform(-100, 100), rng.uniform(0, 3e6),
                                    rng.randrange(-10**6, 3 * 10**6) + rng.choice([0, 0.5, 0.999999999, 1e-9])])
                        for _ in range(1500))]
    rows = "".join(f'<row r="{n}"><c r="A{n}"><v>1</v></c><c r="E{n}" t="inlineStr"><is><t>P</t></is></c>'
                   f'<c r="J{n}" s="{(1, 3, 4)[n % 3]}"><v>{v!r}</v></c></row>' for n, v in enumerate(values, 2))
    calamine, streamed = read_both(workbook_with_sheet(_sheet_xml(f'<row r="1">{HEADER_CELLS}</row>{rows}')))
    assert streamed == calamine
    kinds = {type(row[9]).__name__ for row in calamine[2]}
    assert {"date", "datetime", "time", "timedelta", "float", "CellError"} <= kinds
