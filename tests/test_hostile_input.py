"""Hostile files and cells (issue #17), generated here: nothing crashes, allocates without bound or disagrees.

Files are built with openpyxl, then their sheet XML is patched where openpyxl would not write the hostile
thing (NaN, control characters, far cell references); the corner-cell file is raw zip and XML.
"""

from __future__ import annotations

import io
import json
import os
import re
import tomllib
import zipfile
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from lib.cli import main
from lib.config import Settings
from lib.errors import InputError
from lib.excel_reader import ReadLimits, WorkbookRefused, read_table
from lib.import_report import error_report_csv, error_report_xlsx, neutralize
from lib.subscription_import import import_subscriptions
from lib.subscription_rows import HEADER_SPEC, read_export
from tests.conftest import ROOT
from tests.test_subscription_import import counts, seed_sample_customers, subscriptions

HEADER = ["Kundenr", "Kunde", "Abonnement ID", "Produkt", "Antal", "Enhedspris", "Startdato", "Slutdato", "Note"]
# columns:  A          B        C                D          E        F             G            H           I
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def row(n: int, **cells) -> list:
    base = {"Kundenr": 1001, "Kunde": None, "Abonnement ID": f"H-{n}", "Produkt": "Backup", "Antal": 1,
            "Enhedspris": 10.0, "Startdato": "01-01-2024", "Slutdato": None, "Note": None}
    base.update({k.replace("_", " "): v for k, v in cells.items()})
    return [base[h] for h in HEADER]


def workbook(rows: list[list], *, formats: dict[str, str] | None = None, sheets: dict[str, list] | None = None) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "Abonnementer"
    for cells in [HEADER, *rows]:
        ws.append(cells)
    for ref, number_format in (formats or {}).items():
        ws[ref].number_format = number_format
    for name, extra in (sheets or {}).items():
        other = wb.create_sheet(name)
        for cells in extra:
            other.append(cells)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def patched(data: bytes, replacements: dict[bytes, bytes], member: str = "xl/worksheets/sheet1.xml") -> bytes:
    """The workbook with its sheet XML patched (each key must occur)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == member:
                for old, new in replacements.items():
                    assert old in content, old
                    content = content.replace(old, new)
            target.writestr(info.filename, content)
    return out.getvalue()


def raw_xlsx(sheet_xml: str) -> bytes:
    """A minimal workbook around one sheet's XML (what a hostile generator writes)."""
    pkg = "http://schemas.openxmlformats.org/package/2006"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    members = {
        "[Content_Types].xml": f'<Types xmlns="{pkg}/content-types"><Default Extension="rels" ContentType='
                               '"application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
                               'ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType='
                               '"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
                               '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/'
                               'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>',
        "_rels/.rels": f'<Relationships xmlns="{pkg}/relationships"><Relationship Id="rId1" Type="{rel}/'
                       'officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'<workbook xmlns="{MAIN}" xmlns:r="{rel}"><sheets><sheet name="Ark1" sheetId="1" '
                           'r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'<Relationships xmlns="{pkg}/relationships"><Relationship Id="rId1" '
                                      f'Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'<worksheet xmlns="{MAIN}">{sheet_xml}</worksheet>',
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def inline(ref: str, text: str) -> str:
    return f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>'


CORNER_CELL = raw_xlsx(f'<sheetData><row r="2">{inline("A2", "x")}</row>'
                       f'<row r="1048576">{inline("XFD1048576", "y")}</row></sheetData>')


# --- the file's structure, decided before anything is allocated -------------------------------------------------

def test_the_corner_cell_file_is_refused_from_bytes_and_path_and_the_caller_lives(tmp_path, engine):
    assert len(CORNER_CELL) < 2300
    message = ("file refused: sheet 'Ark1' has a cell at XFD1048576, beyond column CV (IMPORT_MAX_COLUMNS = 100); "
               "delete what lies to the right of the export")
    with pytest.raises(WorkbookRefused) as caught:
        read_export(CORNER_CELL, file_name="corner.xlsx")
    assert str(caught.value) == message
    path = tmp_path / "corner.xlsx"
    path.write_bytes(CORNER_CELL)
    with pytest.raises(WorkbookRefused, match="^file refused: sheet 'Ark1' has a cell at XFD1048576"):
        import_subscriptions(engine, path, apply=True, user="t", role="operator")
    assert counts(engine)["runs"] == 0


def test_cli_refuses_the_corner_cell_file_with_exit_2_and_json(engine, tmp_path, capsys):
    path = tmp_path / "corner.xlsx"
    path.write_bytes(CORNER_CELL)
    assert main(["import-subscriptions", str(path), "--apply", "--json"]) == 2
    captured = capsys.readouterr()
    payload = json.loads(captured.out)
    assert payload["errors"][0]["message"].startswith("file refused: sheet 'Ark1' has a cell at XFD1048576")
    assert captured.err.startswith("error: file refused: ") and captured.err.count("\n") == 1


def test_one_stray_cell_far_right_in_a_real_export_is_refused_by_name(tmp_path):
    data = workbook([row(n) for n in range(2, 40)])
    data = patched(data, {b"</row></sheetData>": b'<c r="XFD39" t="inlineStr"><is><t>stray</t></is></c></row></sheetData>'})
    with pytest.raises(WorkbookRefused, match=r"has a cell at XFD39, beyond column CV"):
        read_export(data, file_name="stray.xlsx")


def test_row_and_column_limits_are_settings(monkeypatch):
    data = workbook([row(n) for n in range(2, 62)])
    monkeypatch.setenv("IMPORT_MAX_ROWS", "50")
    with pytest.raises(WorkbookRefused, match=r"^file refused: sheet 'Abonnementer' has a row 51, beyond row 50 "):
        read_export(data, file_name="rows.xlsx")
    monkeypatch.setenv("IMPORT_MAX_ROWS", "1000")
    monkeypatch.setenv("IMPORT_MAX_COLUMNS", "5")
    with pytest.raises(WorkbookRefused, match=r"has a cell at F1, beyond column E \(IMPORT_MAX_COLUMNS = 5\)"):
        read_export(data, file_name="cols.xlsx")


def test_a_lying_dimension_is_ignored_and_the_cells_are_read():
    cells = "".join(inline(f"{c}1", h) for c, h in zip("ABCD", ["Kundenr", "Produkt", "Antal", "Startdato"], strict=True))
    data = raw_xlsx(f'<dimension ref="A1:XFD1048576"/><sheetData><row r="1">{cells}</row><row r="2">'
                    f'<c r="A2"><v>1001</v></c>{inline("B2", "Backup")}<c r="C2"><v>2</v></c>'
                    f'{inline("D2", "01-02-2024")}</row></sheetData>')
    export = read_export(data, file_name="dimension.xlsx")
    assert [(r.customer_number, r.values["quantity"], r.error) for r in export.rows] == [(1001, 2, None)]


def test_only_the_first_sheets_are_looked_at(monkeypatch):
    blank = {f"Tom {n}": [["nothing here"]] for n in range(4)}
    data = workbook([row(2)], sheets=blank)
    data = patched(data, {b"Abonnementer": b"Data"}, member="xl/workbook.xml")  # not found by name
    assert read_export(data, file_name="ok.xlsx").sheet == "Data"
    wb = load_workbook(io.BytesIO(data))
    wb.move_sheet("Data", offset=4)
    out = io.BytesIO()
    wb.save(out)
    monkeypatch.setenv("IMPORT_MAX_SHEETS", "3")
    with pytest.raises(InputError, match=r"^no sheet among the first 3 \(IMPORT_MAX_SHEETS\) has a header row"):
        read_export(out.getvalue(), file_name="many.xlsx")


def test_a_reader_over_its_memory_limit_is_a_refusal_not_a_crash(monkeypatch):
    data = workbook([row(n) for n in range(2, 20_000)])  # calamine's cells: 20,000 × 9 × 32 bytes at once
    monkeypatch.setenv("IMPORT_READ_MEMORY_MB", "30")
    with pytest.raises(WorkbookRefused) as caught:
        read_export(data, file_name="memory.xlsx")
    assert str(caught.value) == ("file refused: memory.xlsx: reading it needs more than 30 MB of memory "
                                 "(IMPORT_READ_MEMORY_MB)")


def test_rows_are_cut_after_the_last_mapped_column():
    data = workbook([row(2) + [None, "x" * 50]])
    _names, table = read_table(data, HEADER_SPEC, file_name="wide.xlsx", limits=ReadLimits())
    assert [len(r) for r in table.rows] == [9]  # A to I (Note); the two cells beyond never leave the child


def test_a_directory_and_a_missing_file_say_what_they_are(tmp_path):
    with pytest.raises(WorkbookRefused, match=r": is a directory, not an Excel file$"):
        read_export(tmp_path)
    with pytest.raises(WorkbookRefused, match=r"^nope.xlsx: no such file$"):
        read_export(tmp_path / "nope.xlsx")


def test_the_upload_limit_of_the_page_is_the_import_limit():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == Settings().import_max_file_mb == ReadLimits().max_file_mb


def test_duplicate_header_columns_are_refused_unless_mapped_by_hand():
    data = patched(workbook([row(2, Note=99.0)]), {b"<t>Note</t>": b"<t>Pris</t>"})
    with pytest.raises(InputError) as caught:
        read_export(data, file_name="dup.xlsx")
    assert str(caught.value) == ("sheet 'Abonnementer': columns F ('Enhedspris') and I ('Pris') are both the unit "
                                 "price column; delete one, or choose one in the column mapping")
    export = read_export(data, file_name="dup.xlsx", columns={"unit_price": 8})
    assert export.rows[0].values["unit_price"] == Decimal("99.00")


# --- cells: every one checked before arithmetic, the message names the cell -----------------------------------

HOSTILE_CELLS = [
    ({"Enhedspris": 1e26}, "F2: unit price 1E+26 is too large (at most 9,999,999,999.99)"),
    ({"Enhedspris": "1e28"}, "F2: unit price 1E+28 is too large"),
    ({"Enhedspris": "1E+400"}, "F2: unit price 1E+400 is too large"),
    ({"Enhedspris": "1e308"}, "F2: unit price 1E+308 is too large"),
    ({"Enhedspris": "1e999999999"}, "F2: unit price 1E+999999999 is too large"),
    ({"Enhedspris": -50}, "F2: unit price -50 is negative"),
    ({"Enhedspris": "#DIV/0!"}, "F2: unit price is an Excel error (#DIV/0!)"),
    ({"Enhedspris": "#N/A"}, "F2: unit price is an Excel error (#N/A)"),
    ({"Antal": "#VALUE!"}, "E2: quantity is an Excel error (#VALUE!)"),
    ({"Antal": "#REF!"}, "E2: quantity is an Excel error (#REF!)"),
    ({"Startdato": "#NAME?"}, "G2: start date is an Excel error (#NAME?)"),
    ({"Kundenr": "#NUM!"}, "A2: customer number is an Excel error (#NUM!)"),
    ({"Produkt": "#NULL!"}, "D2: product is an Excel error (#NULL!)"),
    ({"Antal": "1e999999999"}, "E2: quantity 1E+999999999 is too large"),
    ({"Antal": 3_000_000_000}, "E2: quantity 3000000000 is too large"),
    ({"Kundenr": 99_999_999_999}, "A2: customer number 99999999999 is not a whole number from 1 to 2,147,483,647"),
    ({"Startdato": "01-01-1850"}, "G2: start date '01-01-1850' is outside 1900–2200"),
    ({"Startdato": date(2500, 1, 1)}, "G2: start date 01-01-2500 is outside 1900–2200"),
    ({"Startdato": -1e308}, "G2: start date -1e+308 is not a date"),
    ({"Startdato": 0}, "G2: start date is 0, which is no day"),
    ({"Enhedspris": "9" * 5000}, "F2: unit price '" + "9" * 97),
]


@pytest.mark.parametrize(("cells", "message"), HOSTILE_CELLS, ids=[m.split(":")[0] + str(i) for i, (_c, m) in
                                                                    enumerate(HOSTILE_CELLS)])
def test_a_hostile_cell_rejects_its_row_with_the_cell_named(cells, message):
    export = read_export(workbook([row(2, **cells), row(3)]), file_name="cells.xlsx")
    bad, good = export.rows
    assert bad.error is not None and bad.error.startswith(message), bad.error
    assert len(bad.error) < 300
    assert good.error is None


def test_nan_infinity_and_out_of_range_dates_in_date_cells(tmp_path):
    """NaN in a date cell read as 1899-12-30, serial -1e308 panicked in the parser, serial 0 read as 00:00."""
    data = workbook([row(2, Startdato=123.25), row(3, Startdato=124.25), row(4, Startdato=125.25), row(5),
                     row(6, Enhedspris=126.25)],
                    formats={"G2": "dd-mm-yyyy", "G3": "dd-mm-yyyy", "G4": "dd-mm-yyyy"})
    data = patched(data, {b"<v>123.25</v>": b"<v>NaN</v>", b"<v>124.25</v>": b"<v>-1e308</v>",
                          b"<v>125.25</v>": b"<v>0</v>", b"<v>126.25</v>": b"<v>inf</v>"})
    errors = [r.error for r in read_export(data, file_name="dates.xlsx").rows]
    assert errors == ["G2: start date is an Excel error (#NUM!)",
                      "row 3 cannot be read: one of its cells holds a number or date far out of range",
                      "G4: start date is the time 00:00 without a day (an Excel date of 0?)",
                      None,
                      "F6: unit price is an Excel error (#NUM!)"]


def test_control_characters_and_long_text(tmp_path):
    data = workbook([row(2, Produkt="PRODMARK"), row(3, Note="NOTEMARK"), row(4, Kunde="x" * 300, Kundenr=None)])
    data = patched(data, {b"PRODMARK": b"Back_x0000_up", b"NOTEMARK": b"bell_x0007_"})
    errors = [r.error for r in read_export(data, file_name="text.xlsx").rows]
    assert errors == ["D2: product 'Back\\x00up' contains a control character (such as NUL)",
                      "I3: note 'bell\\x07' contains a control character (such as NUL)",
                      "B4: customer name is 300 characters long, more than 200"]


def test_chunked_validation_equals_row_by_row_for_hostile_cells():
    rows = [row(n, **cells) for n, (cells, _m) in enumerate(HOSTILE_CELLS, start=2)] + [row(99)]
    data = workbook(rows)
    whole = read_export(data, file_name="a.xlsx").rows
    assert sum(r.error is not None for r in whole) == len(HOSTILE_CELLS)
    assert whole[-1].error is None


# --- preview and apply agree, on both databases ---------------------------------------------------------------

def test_preview_and_apply_agree_and_nothing_hostile_is_stored(engine):
    seed_sample_customers(engine)
    rows = [row(2, Produkt="PRODMARK"), row(3, Enhedspris="#DIV/0!"), row(4, Enhedspris=1e26), row(5),
            row(6, Enhedspris=-1)]
    data = patched(workbook(rows), {b"PRODMARK": b"Back_x0000_up"})
    _plan, preview = import_subscriptions(engine, data, file_name="h.xlsx")
    _plan, applied = import_subscriptions(engine, data, file_name="h.xlsx", apply=True, user="t", role="operator")
    assert {k: v for k, v in applied.items() if k not in ("run_id", "dry_run")} == {
        k: v for k, v in preview.items() if k not in ("run_id", "dry_run")}
    assert preview["created"] == 1 and [e["row"] for e in preview["errors"]] == [2, 3, 4, 6]
    stored = subscriptions(engine)
    assert [(s["external_id"], s["product"], s["unit_price"]) for s in stored] == [("H-5", "Backup", Decimal("10.00"))]
    # re-importing with an error cell where a price was: rejected, the stored price kept
    again = workbook([row(5, Enhedspris="#DIV/0!")])
    _plan, result = import_subscriptions(engine, again, file_name="h.xlsx", apply=True, user="t", role="operator")
    assert result["updated"] == 0 and result["errors"][0]["message"] == "F2: unit price is an Excel error (#DIV/0!)"
    assert subscriptions(engine)[0]["unit_price"] == Decimal("10.00")


# --- reports safe to open -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["=1+1", " =1+1", "\n=1+1", "\t=1", "\r=1", "+1", "-1+1", "@SUM(A1)", "＝1+1",
                                  "＋1", "－1", "＠x", "  \u3000=1"])
def test_formula_like_text_is_neutralised(text):
    assert neutralize(text).startswith("'")


def test_reports_open_with_control_characters_formulas_and_huge_cells(engine):
    seed_sample_customers(engine)
    data = workbook([row(2, Kundenr=None, Kunde="NAMEMARK"), row(3, Kundenr=None, Kunde=" =HYPERLINK(1)"),
                     row(4, Kundenr=None, Kunde="＝1+1", Note="y" * 1500), row(5, Kundenr=4242, Note="z" * 5_000)])
    data = patched(data, {b"NAMEMARK": b"Evil_x0001_ApS"})
    plan, _ = import_subscriptions(engine, data, file_name="r.xlsx")
    assert len(plan.errors()) == 4
    book = load_workbook(io.BytesIO(error_report_xlsx(plan)))
    cells = [[c.value for c in r] for r in book.active.iter_rows()]
    names = [r[cells[0].index("customer name")] for r in cells[1:]]
    assert names == ["EvilApS", "'=HYPERLINK(1)", "'＝1+1", None]  # the control character removed
    csv_text = error_report_csv(plan).decode("utf-8-sig")
    assert "\x01" not in csv_text and "'=HYPERLINK(1)" in csv_text
    assert max(len(line) for line in csv_text.splitlines()) < 1000


def test_no_stray_child_processes_are_left():
    before = _children()
    for _ in range(3):
        with pytest.raises(WorkbookRefused):
            read_export(CORNER_CELL, file_name="c.xlsx")
        _names, table = read_table(workbook([row(n) for n in range(2, 30)]), HEADER_SPEC, file_name="x.xlsx")
        next(iter(table.rows))
        table.rows.close()  # abandoned half-way: the child is reaped
    assert _children() == before


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if re.match(r"\d+ \(.*\) \S (\d+)", stat).group(1) == me:
                found.add(int(entry.name))
    return found


# --- a lost database connection ---------------------------------------------------------------------------------

@pytest.fixture
def doomed(db_url, monkeypatch):
    """PostgreSQL with the Hub's connections named, and a function that terminates the busy ones (a real
    pg_terminate_backend from another connection, as an administrator or a failover would)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a SQLite file has no server connection to lose")
    from sqlalchemy import create_engine, text

    from lib.db import get_engine
    from lib.migrations import migrate_core
    from tests.conftest import PG_BASE_URL

    name = f"hostile-{os.getpid()}-{id(monkeypatch)}"
    url = f"{db_url}&application_name={name}"
    monkeypatch.setenv("DATABASE_URL", url)
    engine = get_engine(url)
    migrate_core(engine)
    seed_sample_customers(engine)
    admin = create_engine(PG_BASE_URL)
    killed: list[int] = []

    def kill(*_args) -> None:
        if killed:
            return
        with admin.connect() as conn:
            # Pick the pids first, terminate only those: in one WHERE, PostgreSQL may call pg_terminate_backend
            # before the application_name test and end every connection on the server (seen: it did).
            pids = list(conn.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE application_name = :n AND state <> 'idle' "
                "AND pid <> pg_backend_pid()"), {"n": name}).scalars())
            for pid in pids:
                if conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar():
                    killed.append(pid)
        assert killed, "no busy import connection to terminate"

    yield engine, kill
    admin.dispose()


def big_export(rows: int = 6000) -> bytes:
    return workbook([row(n) for n in range(2, rows + 2)])


def test_a_connection_lost_mid_import_fails_the_run_with_what_was_kept(doomed):
    from lib.errors import DatabaseLost
    from lib.runs import list_runs

    engine, kill = doomed
    with pytest.raises(DatabaseLost) as caught:
        import_subscriptions(engine, big_export(), file_name="big.xlsx", apply=True, user="t", role="operator",
                             on_progress=kill)
    assert str(caught.value).startswith("the database connection was lost during the import (")
    planned = re.search(r"nothing was written \(the import is one transaction; ([\d.,]+) rows had been planned\)",
                        str(caught.value))
    assert planned, str(caught.value)  # how far it got depends on when the driver notices the lost connection
    run = list_runs(engine)[0]
    assert run["status"] == "failed" and run["error"] == str(caught.value)
    assert run["stats"]["created"] == 0
    assert run["stats"]["rows_planned"] == int(planned.group(1).replace(",", "").replace(".", "")) >= 1000
    assert counts(engine)["subscriptions"] == 0


def test_cli_reports_a_lost_connection_in_one_line_and_one_object(doomed, monkeypatch, capsys, tmp_path):
    from lib.subscription_import import Planner

    engine, kill = doomed
    plan_chunk, chunks = Planner.plan, []

    def plan_then_lose_the_connection(self, rows):  # the fault comes before the second chunk, always
        chunks.append(len(rows))
        if len(chunks) == 2:
            kill()
        return plan_chunk(self, rows)

    monkeypatch.setattr(Planner, "plan", plan_then_lose_the_connection)
    path = tmp_path / "lost.xlsx"
    path.write_bytes(big_export())
    assert main(["import-subscriptions", str(path), "--apply", "--json"]) == 1
    captured = capsys.readouterr()
    # log lines aside (and psycopg2's own "unraisable" report when COPY was cut off, which the CLI does not route
    # into the log yet), one error line, and it is the last
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: the database connection was lost during the import (")
    assert captured.err.splitlines()[-1] == errors[0] and "Traceback" not in captured.err
    payload = json.loads(captured.out)
    assert payload["run_id"] is not None and payload["created"] == 0 and payload["error"].startswith("the database")
    assert counts(engine)["subscriptions"] == 0


# --- writers do not starve --------------------------------------------------------------------------------------

def test_a_customer_edit_gets_through_between_the_chunks_of_an_import(engine, tmp_path):
    """On SQLite the one pass commits chunk by chunk (PostgreSQL never blocked the edit): an edit from
    another connection while the import is under way finishes at once, not after the whole file."""
    import time as clock

    from sqlalchemy import create_engine

    from lib.customers import get_customer, update_customer

    ids = seed_sample_customers(engine)
    other = create_engine(engine.url, connect_args={"timeout": 2} if engine.dialect.name == "sqlite" else {})
    waits: list[float] = []

    def edit(done: int, _total: int, _message: str) -> None:
        if 0 < done < 6000 and len(waits) < 2:
            started = clock.perf_counter()
            update_customer(other, ids[1002], {"phone": f"{done:08d}"}, user="editor")
            waits.append(clock.perf_counter() - started)

    _plan, result = import_subscriptions(engine, big_export(), file_name="big.xlsx", apply=True, user="t",
                                         role="operator", on_progress=edit)
    other.dispose()
    assert result["created"] == 6000 and len(waits) == 2 and max(waits) < 2
    assert get_customer(engine, ids[1002])["phone"] == f"{3500:08d}"
