"""The page's preview (the worker's) keeps the counts and the first rows, not every row; its error report files
still hold every error, and Apply writes what the whole file says."""

from __future__ import annotations

import csv
from datetime import date

from openpyxl import load_workbook
from sqlalchemy import text

from lib.job_plans import get_plan, plan_for_run
from lib.job_worker import APPLY, PREVIEW, execute
from lib.runs import get_run, record_preview, start_run
from lib.subscription_import import PREVIEW_ROWS
from lib.worker_jobs import IMPORT_KIND
from tests.test_excel_reader import DANISH_HEADER, write_xlsx
from tests.test_subscription_import import seed_sample_customers

CREATES = PREVIEW_ROWS + 300
UNMATCHED = PREVIEW_ROWS + 200
REJECTED = 40


def long_export_rows() -> list[list]:
    """More creates and unmatched rows than a preview keeps of each, then rejected rows (formula-like price)."""
    rows = []
    for n in range(CREATES):
        rows.append([1001 + n % 3, None, None, f"S{n}", "Produkt", None, 1, 10, "Måned", date(2024, 1, 1), None,
                     "Aktiv", None])
    for n in range(UNMATCHED):
        rows.append([900_000 + n, None, None, f"U{n}", "Produkt", None, 1, 10, "Måned", date(2024, 1, 1), None,
                     "Aktiv", None])
    for n in range(REJECTED):
        rows.append([1001, None, None, f"R{n}", "Produkt", None, -1, "@x", "Måned", date(2024, 1, 1), None,
                     "Aktiv", None])
    return rows


def test_a_preview_stores_the_first_rows_and_counts_and_reports_every_error(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("JOBS_DIR", str(tmp_path / "jobs"))
    seed_sample_customers(engine)
    path = write_xlsx(tmp_path / "big.xlsx", {"Abonnementer": [DANISH_HEADER, *long_export_rows()]})
    preview = record_preview(engine, IMPORT_KIND, user="anna", parameters={
        "action": PREVIEW, "role": "operator", "path": str(path), "file_name": "big.xlsx"})
    assert execute(engine, preview.id) == "succeeded"

    stored = plan_for_run(engine, preview.id)
    plan = get_plan(engine, stored["id"])["plan"]
    total = CREATES + UNMATCHED + REJECTED
    assert plan["rows_total"] == total
    assert plan["counts"]["created"] == CREATES and plan["counts"]["unmatched"] == UNMATCHED
    assert plan["counts"]["rejected"] == REJECTED
    outcomes = [r["outcome"] for r in plan["rows"]]
    assert outcomes.count("create") == PREVIEW_ROWS and outcomes.count("unmatched") == PREVIEW_ROWS
    assert outcomes.count("rejected") == REJECTED
    assert [r["row"] for r in plan["rows"]] == sorted(r["row"] for r in plan["rows"])
    assert len(plan["errors"]) == PREVIEW_ROWS and plan["errors_total"] == UNMATCHED + REJECTED
    assert get_run(engine, preview.id)["stats"]["errors"] == UNMATCHED + REJECTED

    with open(plan["reports"]["csv"], encoding="utf-8-sig", newline="") as handle:
        lines = list(csv.reader(handle, delimiter=";"))
    assert len(lines) == 1 + UNMATCHED + REJECTED
    assert lines[-1][:2] == [str(total + 1), "rejected"]
    assert lines[-1][3 + 7] == "'@x"  # neutralised, as the whole-plan report does
    sheet = list(load_workbook(plan["reports"]["xlsx"], read_only=True).active.values)
    assert len(sheet) == 1 + UNMATCHED + REJECTED and sheet[-1][:2] == (total + 1, "rejected")

    apply = start_run(engine, IMPORT_KIND, user="anna", parameters={
        "action": APPLY, "role": "operator", "plan_id": stored["id"], "file_name": "big.xlsx"})
    assert execute(engine, apply.id) == "succeeded"
    stats = get_run(engine, apply.id)["stats"]
    assert (stats["rows"], stats["created"], stats["unmatched"], stats["rejected"]) == (
        total, CREATES, UNMATCHED, REJECTED)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == CREATES
