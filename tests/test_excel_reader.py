"""Reading BMC Office exports: sheet and header detection, Danish notation, and every refusal with its message."""

from __future__ import annotations

import io
import zipfile
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook

from lib.errors import InputError
from lib.excel_reader import normalize_header
from lib.subscription_rows import parse_number_text, read_export
from tests.conftest import ROOT

SHARED_SAMPLES = ROOT.parent / "shared" / "data" / "bmc-office"
LOCAL_SAMPLES = ROOT / "tests" / "data"
DANISH_HEADER = ["Kundenr", "Kunde", "CVR", "Abonnement ID", "Produkt", "Varenr", "Antal", "Enhedspris", "Interval",
                 "Startdato", "Slutdato", "Status", "Bemærkning"]


def sample(name: str) -> Path:
    """A sample export: from shared/ beside the clone when present, else the copy in tests/data."""
    shared = SHARED_SAMPLES / name
    return shared if shared.is_file() else LOCAL_SAMPLES / name


def xlsx_bytes(sheets: dict[str, list[list]]) -> bytes:
    """An .xlsx with the given sheets (first key first); rows are written as given, None = empty cell."""
    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        for row in rows:
            ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def write_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    path.write_bytes(xlsx_bytes(sheets))
    return path


def test_local_copies_match_the_shared_samples():
    for name in ("abonnementer-clean.xlsx", "abonnementer-messy.xlsx"):
        assert (LOCAL_SAMPLES / name).is_file()
        if (SHARED_SAMPLES / name).is_file():
            assert (LOCAL_SAMPLES / name).read_bytes() == (SHARED_SAMPLES / name).read_bytes()


def test_clean_sample_reads_every_row_with_stored_vocabulary():
    export = read_export(sample("abonnementer-clean.xlsx"))
    assert export.sheet == "Abonnementer" and export.header_row == 1
    assert [r.row for r in export.rows] == [2, 3, 4, 5, 6]
    first = export.rows[0]
    assert (first.customer_number, first.cvr, first.customer_name) == (1001, "13585628", "Nordlys Rådgivning ApS")
    assert first.values["external_id"] == "A-5001"
    assert first.values["unit_price"] == Decimal("89.50") and first.values["quantity"] == 12
    assert first.values["billing_interval"] == "monthly" and first.values["status"] == "active"
    assert first.values["start_date"] == date(2024, 1, 1)
    last_known = export.rows[3]
    assert last_known.values["billing_interval"] == "yearly" and last_known.values["status"] == "cancelled"
    assert last_known.values["end_date"] == date(2025, 5, 14)
    assert all(r.error is None for r in export.rows)


def test_messy_sample_second_sheet_header_on_row_3_and_row_reasons():
    export = read_export(sample("abonnementer-messy.xlsx"))
    assert export.sheet == "Abonnementer" and export.header_row == 3
    assert export.sheet_names == ["Export", "Abonnementer"]
    assert [r.row for r in export.rows] == [4, 5, 6, 7, 8, 9]  # blank row and "I alt" not counted
    row4, row5 = export.rows[0], export.rows[1]
    assert row4.cvr == "13585628" and row4.values["unit_price"] == Decimal("45.00")
    assert row4.values["start_date"] == date(2024, 2, 1)
    assert row5.values["unit_price"] == Decimal("1234.50") and row5.values["start_date"] == date(2024, 3, 15)
    errors = {r.row: r.error for r in export.rows if r.error}
    assert errors == {
        6: "C6: CVR number '29910252' fails the modulus-11 check",
        7: "E7: quantity -2 is negative",
        8: "G8: unknown billing interval 'hver uge' (use Måned/monthly, Kvartal/quarterly, Halvår/half-yearly or "
           "År/yearly)",
        9: "I9: end date 01-01-2024 is before start date 01-06-2024",
    }


def test_generated_messy_export(tmp_path):
    rows = [
        ["BMC Office – abonnementer pr. 01-11-2026"],
        ["Udskrevet af Anna"],
        [],
        [" KUNDENR ", "kundenavn:", "cvr nummer", "Abonnementsnr", "  PRODUKT", "varenummer", "ANTAL ", "Pris",
         "Faktureringsinterval", "startdato:", "Udløbsdato", "STATUS", "Note"],
        [1001, "Nordlys", "DK 13 58 56 28", 600001, "M365", "M-1", 3, "1.234,50", "Kvartal", datetime(2024, 1, 2),
         None, "Aktiv", "  "],
        [None, "Blåbær", None, "600002", "Backup", None, "2", "89,50 kr.", "halvår", "2024-02-03", "31/12/2025",
         "Opsagt", "ok"],
        [None, "Beta", None, None, "Hosting", None, 1.0, 99, None, "05.06.2024", None, None, None],
        [None, "Gamma", None, None, "Licens", None, "=1+1", 10, "Måned", "01-01-2024", None, "Pause", None],
        [None, "Delta", None, None, "Licens", None, "2,5", "abc", "Måned", "31-02-2024", None, "Aktiv", None],
        [None, None, None, None, None, None, None, None, None, None, None, None, None],
        [None, "I alt", None, None, None, None, 8, "=SUM(H5:H9)", None, None, None, None, None],
        [],
        [],
    ]
    export = read_export(write_xlsx(tmp_path / "export.xlsx", {"Data": rows}))
    assert export.header_row == 4 and export.unrecognised_headers == []
    assert [r.row for r in export.rows] == [5, 6, 7, 8, 9]
    one, two, three, four, five = export.rows
    assert one.values["external_id"] == "600001"  # never "600001.0"
    assert one.cvr == "13585628" and one.values["unit_price"] == Decimal("1234.50")
    assert one.values["billing_interval"] == "quarterly" and one.values["note"] is None
    assert two.values["external_id"] == "600002" and two.values["unit_price"] == Decimal("89.50")
    assert two.values["billing_interval"] == "half-yearly" and two.values["status"] == "cancelled"
    assert (two.values["start_date"], two.values["end_date"]) == (date(2024, 2, 3), date(2025, 12, 31))
    assert three.values["billing_interval"] == "monthly" and three.values["status"] == "active"  # defaults
    assert three.values["start_date"] == date(2024, 6, 5) and three.values["quantity"] == 1
    assert four.error == "G8: quantity is empty"  # a formula is never evaluated; it has no cached value here
    assert five.error == ("G9: quantity 2.5 is not a whole number; H9: unit price 'abc' is not a number; "
                          "J9: start date '31-02-2024' is not a valid date")


def test_header_normalisation_and_danish_numbers():
    assert normalize_header("  CVR-nr.: ") == normalize_header("CVR nr") == "cvr nr"
    assert normalize_header(" customer no ") == "customer no"
    assert parse_number_text("1.234,50") == Decimal("1234.50")
    assert parse_number_text("89,50 kr.") == Decimal("89.50")
    assert parse_number_text("1.234") == Decimal("1234")
    assert parse_number_text("89.5") == Decimal("89.5")
    assert parse_number_text("1,234.50") == Decimal("1234.50")
    assert parse_number_text("DKK 1 250,00") == Decimal("1250.00")


def test_sheet_choice_named_sheet_then_first_with_header(tmp_path):
    header = ["Kundenr", "Produkt", "Antal", "Startdato"]
    data = [1001, "X", 1, "01-01-2024"]
    path = write_xlsx(tmp_path / "a.xlsx", {"Noter": [["hej"]], "Ark2": [header, data], "Ark3": [header, data, data]})
    assert read_export(path).sheet == "Ark2"
    assert len(read_export(path, sheet="Ark3").rows) == 2
    path = write_xlsx(tmp_path / "b.xlsx", {"Ark1": [header, data], "Abonnementer": [header, data, data]})
    assert read_export(path).sheet == "Abonnementer"
    with pytest.raises(InputError, match=r"there is no sheet named 'Nope' \(sheets: 'Ark1', 'Abonnementer'\)"):
        read_export(path, sheet="Nope")


def test_column_mapping_can_be_corrected(tmp_path):
    path = write_xlsx(tmp_path / "odd.xlsx", {"Ark": [["Kundenr", "Ydelse", "Antal", "Startdato"],
                                                     [1001, "Hosting", 2, "01-01-2024"]]})
    with pytest.raises(InputError, match="no sheet has a header row with the required columns"):
        read_export(path)
    export = read_export(path, sheet="Ark", columns={"product": 1})
    assert export.mapping["product"] == 1 and export.rows[0].values["product"] == "Hosting"


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


REFUSALS = [
    ("export.csv", b"Kundenr;Produkt\n1001;X\n", "export.csv: CSV files are not supported; save the export as .xlsx"),
    ("export.xlsx", b"Kundenr;Produkt\n1001;X\n", "export.xlsx: not an Excel workbook (.xlsx/.xlsm)"),
    ("export.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600,
     "export.xls: this is an old Excel 97-2003 (.xls) file, which is not supported; save it as .xlsx"),
    ("secret.xlsx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100 + "EncryptionInfo".encode("utf-16-le") + b"\0" * 400,
     "secret.xlsx: the workbook is encrypted (password-protected); save it without a password and try again"),
    ("photo.xlsx", b"\x89PNG\r\n\x1a\n" + b"\0" * 300, "photo.xlsx: not an Excel workbook (.xlsx/.xlsm)"),
    ("empty.xlsx", b"", "empty.xlsx: the file is empty"),
    ("notes.xlsx", _zip_bytes({"word/document.xml": b"<w/>"}),
     "notes.xlsx: not an Excel workbook (the zip has no xl/workbook.xml)"),
    ("report.ods", _zip_bytes({"content.xml": b"<x/>"}),
     "report.ods: .ods files are not supported; upload an .xlsx or .xlsm workbook"),
]


@pytest.mark.parametrize(("name", "content", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_from_bytes_and_path(tmp_path, name, content, message):
    with pytest.raises(InputError) as caught:
        read_export(content, file_name=name)
    assert str(caught.value) == message
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        read_export(path)
    assert str(caught.value) == message


def test_truncated_workbook_is_refused(tmp_path):
    whole = sample("abonnementer-clean.xlsx").read_bytes()
    with pytest.raises(InputError) as caught:
        read_export(whole[: len(whole) // 2], file_name="cut.xlsx")
    assert str(caught.value) == "cut.xlsx: the file is damaged or truncated (not a readable .xlsx)"


def test_zip_bomb_is_refused_before_parsing():
    good = zipfile.ZipFile(io.BytesIO(xlsx_bytes({"Ark": [["Kundenr"]]})))
    members = {n: good.read(n) for n in good.namelist()}
    members["xl/worksheets/sheet1.xml"] = b"<x>" + b" " * (40 * 1024 * 1024) + b"</x>"
    with pytest.raises(InputError) as caught:
        read_export(_zip_bytes(members), file_name="bomb.xlsx")
    assert str(caught.value).startswith("bomb.xlsx: xl/worksheets/sheet1.xml is compressed ")
    assert str(caught.value).endswith(":1, more than 200:1 (a zip bomb?)")


def test_file_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IMPORT_MAX_FILE_MB", "1")
    path = tmp_path / "big.xlsx"
    path.write_bytes(b"PK\x03\x04" + b"\0" * (3 * 1024 * 1024 // 2))
    with pytest.raises(InputError) as caught:
        read_export(path)
    assert str(caught.value) == "the file is 1.5 MB, over the 1 MB limit (IMPORT_MAX_FILE_MB)"
    with pytest.raises(InputError, match="over the 1 MB limit"):
        read_export(path.read_bytes(), file_name="big.xlsx")


def test_missing_columns_empty_sheet_and_header_only(tmp_path):
    path = write_xlsx(tmp_path / "cols.xlsx", {"Abonnementer": [["Kunde", "Produkt"], ["A", "B"]]})
    with pytest.raises(InputError) as caught:
        read_export(path)
    assert str(caught.value) == ("sheet 'Abonnementer' has no header row with the required columns (product, "
                                 "quantity, start date, and a customer number, CVR or customer name)")
    path = write_xlsx(tmp_path / "none.xlsx", {"Ark1": [["Kunde", "Produkt"]], "Ark2": [["x"]]})
    with pytest.raises(InputError) as caught:
        read_export(path)
    assert str(caught.value) == ("no sheet has a header row with the required columns (product, quantity, "
                                 "start date, and a customer number, CVR or customer name)")
    path = write_xlsx(tmp_path / "empty.xlsx", {"Abonnementer": []})
    with pytest.raises(InputError) as caught:
        read_export(path)
    assert str(caught.value) == "sheet 'Abonnementer' is empty"
    path = write_xlsx(tmp_path / "header.xlsx", {"Abonnementer": [["Kundenr", "Produkt", "Antal", "Startdato"], []]})
    with pytest.raises(InputError) as caught:
        read_export(path)
    assert str(caught.value) == "sheet 'Abonnementer' has a header but no data rows"


def test_xlsm_is_accepted(tmp_path):
    path = write_xlsx(tmp_path / "macro.xlsm", {"Abonnementer": [DANISH_HEADER[:1] + ["Produkt", "Antal", "Startdato"],
                                                                [1001, "X", 1, "01-01-2024"]]})
    assert len(read_export(path).rows) == 1


def test_equal_cells_of_different_types_are_parsed_apart(tmp_path):
    """Validation parses each distinct cell once; True == 1 and -0.0 == 0.0 must still be told apart."""
    header = ["Kundenr", "Produkt", "Antal", "Enhedspris", "Startdato"]
    rows = [header, [1001, "A", 1, 0.0, "01-01-2024"], [1001, "B", True, -0.0, "01-01-2024"],
            [1001, "C", 1, 2.5, "01-01-2024"]]
    export = read_export(write_xlsx(tmp_path / "types.xlsx", {"Abonnementer": rows}))
    first, second, third = export.rows
    assert first.error is None and first.values["quantity"] == 1
    assert str(first.values["unit_price"]) == "0.00"
    assert second.error == "C3: quantity True is not a number"
    assert str(second.values["unit_price"]) == "-0.00"
    assert third.values["quantity"] == 1 and third.values["unit_price"] == Decimal("2.50")


def test_a_sheet_that_starts_in_a_later_column_and_row_keeps_its_columns_and_row_numbers(tmp_path):
    """The reader streams rows; calamine starts them at the first used column, the reader pads them back."""
    header = ["Kundenr", "Kunde", "Produkt", "Antal", "Startdato"]
    rows = [[], [], [None, None, *header], [None, None, 1001, "Nordlys", "Backup", 2, "01-02-2024"],
            [None, None, 1002, None, "Hosting", 1, date(2024, 3, 4)]]
    export = read_export(write_xlsx(tmp_path / "offset.xlsx", {"Abonnementer": rows}))
    assert (export.header_row, export.mapping["product"]) == (3, 4)
    assert [(r.row, r.customer_number, r.values["product"], r.values["start_date"]) for r in export.rows] == [
        (4, 1001, "Backup", date(2024, 2, 1)), (5, 1002, "Hosting", date(2024, 3, 4))]


def test_header_found_after_blank_rows_and_data_after_blank_rows(tmp_path):
    header = ["Kundenr", "Produkt", "Antal", "Startdato"]
    rows = [[None], ["Rapport"], [], header, [], [], [1001, "Backup", 1, "01-01-2024"]]
    export = read_export(write_xlsx(tmp_path / "gaps.xlsx", {"Abonnementer": rows}))
    assert export.header_row == 4 and [r.row for r in export.rows] == [7]
    with pytest.raises(InputError, match="^sheet 'Abonnementer' has a header but no data rows$"):
        read_export(write_xlsx(tmp_path / "none.xlsx", {"Abonnementer": [*rows[:6], [None, "  "]]}))
