"""Validation chunk by chunk gives what validating each row on its own gives, whatever the chunk size."""

from __future__ import annotations

import random
from datetime import date, datetime
from itertools import islice

import pytest

from lib.excel_reader import UNREADABLE, CellError, SheetTable
from lib.subscription_rows import RowValidator, iter_rows, parse_row

MAPPING = {"customer_number": 0, "customer_name": 1, "cvr": 2, "external_id": 3, "product": 4, "quantity": 5,
           "unit_price": 6, "billing_interval": 7, "start_date": 8, "end_date": 9, "status": 10}
# cells of every kind a reader hands over, good and bad; equal-but-different values (1, 1.0, True; 0.0, -0.0)
# are the trap for a cache of parsed cells kept across chunks
CELLS = [
    [1001, 1001.0, "1001", "", None, True, "abc", 0.0],
    ["Nordlys ApS", "", None, " Østergaard & Søn A/S ", 1.0],
    ["13585628", 13585628, "DK-13 58 56 28", "12345678", "", None],
    ["A-1", 17, 17.0, "", None, "A-1 "],
    ["Hosting", "Backup", " Hosting ", "", None, "I alt", 3],
    [1, 1.0, True, "2", "1,5", -1, 0, 0.0, -0.0, "", None, "x"],
    [99.5, "1.234,50", "89,50 kr.", 0.0, -0.0, "", None, True, 1, 1.0, "x", 1e12],
    ["Måned", "kvartal", "År", "", None, "weekly", 1],
    [date(2024, 1, 31), datetime(2024, 2, 1, 8, 30), 45000, 45000.0, "01-02-2024", "2024-13-01", "", None, True],
    [None, "", date(2023, 1, 1), "31.12.2030", "nope"],
    ["Aktiv", "opsagt", "Pause", "", None, "frozen"],
]


# and hostile ones (#17): error cells beside the same text ("#N/A" the text and #N/A the error are equal strings),
# NaN and infinity, control characters, numbers beyond every range, text beyond its column's length
HOSTILE = [CellError("#N/A"), "#N/A", CellError("#DIV/0!"), CellError(UNREADABLE), float("nan"), float("inf"),
           "a\x00b", 1e26, "1e999999999", -1e308, "9" * 120, "x" * 250]
CELLS = [[*column, *HOSTILE] for column in CELLS]


def messy_rows(count: int, seed: int) -> list[list]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        if rng.random() < 0.05:
            rows.append([""] * len(CELLS))  # a blank row
            continue
        rows.append([rng.choice(column) for column in CELLS])
    return rows


def table(rows: list[list]) -> SheetTable:
    return SheetTable("Abonnementer", 1, [], MAPPING, iter(rows), 2, len(rows))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chunked_validation_matches_row_by_row(seed):
    rows = messy_rows(600, seed)
    expected = []
    for offset, cells in enumerate(rows):
        if any(c not in ("", None) for c in cells) and cells[4] not in ("", None, "I alt"):
            expected.append(parse_row(offset + 2, cells, MAPPING))
    by_row = {r.row: (r.customer_number, r.cvr, r.customer_name, r.values, r.error) for r in expected}
    for chunk, first in ((1, None), (7, 3), (64, None), (5000, 1)):
        got = [r for part in iter_rows(table(list(rows)), chunk, first_chunk=first) for r in part]
        assert {r.row for r in got} >= set(by_row)
        for r in got:
            if r.row in by_row:
                assert (r.customer_number, r.cvr, r.customer_name, r.values, r.error) == by_row[r.row], r.row
        assert all(r.row - 2 < len(rows) for r in got)


def test_a_cache_never_mixes_up_equal_values_of_another_type():
    """Chunk 1 fills the quantity cache with int 1; chunk 2 holds True, which must not reuse it."""
    validator = RowValidator(MAPPING)
    good = [1001, "Kunde", None, None, "Hosting", 1, 10.0, "Måned", date(2024, 1, 1), None, "Aktiv"]
    first = validator.validate([list(good) for _ in range(3)], 2)
    second = validator.validate([[*good[:5], True, *good[6:]], [*good[:5], 1.0, *good[6:]]], 5)
    assert [r.values["quantity"] for r in first] == [1, 1, 1]
    assert second[0].error and "quantity" in second[0].error
    assert second[1].error is None and second[1].values["quantity"] == 1
    third = validator.validate([[*good[:6], -0.0, *good[7:]], [*good[:6], 0.0, *good[7:]]], 7)
    assert [str(r.values["unit_price"]) for r in third] == ["-0.00", "0.00"]


def test_rows_are_read_as_they_are_validated():
    rows = iter(messy_rows(50, 9))
    parts = iter_rows(SheetTable("S", 1, [], MAPPING, rows, 2, 50), 10)
    next(parts)
    assert len(list(islice(rows, 100))) == 40  # only the first chunk was taken from the reader
