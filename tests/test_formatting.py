"""lib/formatting: one way to show numbers, times, booleans and run statistics."""

from datetime import UTC, date, datetime
from decimal import Decimal

from lib.formatting import money, number, run_summary, text, when, yes_no


def test_numbers_are_danish():
    assert number(1234567) == "1.234.567"
    assert number(2384.21, 2) == "2.384,21"
    assert number(Decimal("833.333"), 2) == "833,33"
    assert number(-1000.5, 1) == "-1.000,5"
    assert money(Decimal("2384.21")) == "2.384,21 kr."
    assert number(None) == "" and money(None) == ""


def test_times_are_copenhagen_and_dates_day_first():
    assert when(datetime(2026, 7, 1, 10, 0, tzinfo=UTC)) == "01-07-2026 12:00"   # summer: UTC+2
    assert when(datetime(2026, 12, 1, 10, 0)) == "01-12-2026 11:00"                        # naive = UTC; winter +1
    assert when(date(2026, 3, 9)) == "09-03-2026"
    assert when("2026-03-09") == "09-03-2026" and when("2026-12-01 10:00:00") == "01-12-2026 11:00"  # SQLite text


def test_booleans_and_empty():
    assert [yes_no(v) for v in (True, False, 1, 0, "True", "0", None)] == ["yes", "no", "yes", "no", "yes", "no", ""]
    assert text(None) == "" and text(True) == "yes" and text(30000) == "30.000"


def test_run_summaries_read_as_sentences():
    assert run_summary("cvr-lookup", {"candidates": 10, "found": 7, "updated": 7}) == "7 of 10 found"
    assert run_summary("import-subscriptions", {"created": 95826, "updated": 0, "unchanged": 3, "unmatched": 1}) == (
        "95.826 created, 0 updated, 3 unchanged, 1 unmatched")
    assert run_summary("something-new", {"written": 1200, "skipped": 0, "note": "x"}) == "written 1.200"
    assert run_summary("cvr-lookup", {}) == ""


def test_every_outcome_word_is_in_the_glossary():
    from pathlib import Path

    from lib.formatting import OUTCOME_WORDS

    glossary = (Path(__file__).resolve().parent.parent / "docs" / "GLOSSARY.md").read_text()
    for kind, words in OUTCOME_WORDS.items():
        for word in words.values():
            assert f"| {kind} | {word} |" in glossary, f"{kind}: '{word}' is not explained in docs/GLOSSARY.md"
