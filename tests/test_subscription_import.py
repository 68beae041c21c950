"""Plan and apply the BMC Office import on SQLite and PostgreSQL: outcomes, idempotence, locks, undo, CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from sqlalchemy import select, text

from lib import tables
from lib.cli import main
from lib.customers import create_customer, set_subscriptions_locked
from lib.errors import NotAllowed
from lib.import_report import error_report_csv, error_report_xlsx, neutralize
from lib.runs import get_run, list_runs, undo_run
from lib.subscription_import import PlanOutdated, apply_plan, import_subscriptions, plan_import, preview_import
from lib.subscription_rows import open_export, read_export
from tests.test_excel_reader import sample, write_xlsx

HEADER = ["Kundenr", "Kunde", "CVR", "Abonnement ID", "Produkt", "Antal", "Enhedspris", "Interval", "Startdato",
          "Status"]
ADMIN = {"user": "anna@bmc.dk", "role": "operator"}


def seed_sample_customers(engine) -> dict[int, int]:
    """The three customers the sample files refer to; e-conomic number → Hub id."""
    return {
        1001: create_customer(engine, {"name": "Nordlys Rådgivning ApS", "cvr_number": "13585628",
                                       "economic_customer_number": 1001}, user="seed"),
        1002: create_customer(engine, {"name": "Østergaard & Søn A/S", "cvr_number": "20756438",
                                       "economic_customer_number": 1002}, user="seed"),
        1003: create_customer(engine, {"name": "Blåbær IT I/S", "cvr_number": "29910251",
                                       "economic_customer_number": 1003}, user="seed"),
    }


def counts(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("subscriptions", "changes", "runs", "customers")}


def subscriptions(engine) -> list[dict]:
    s = tables.subscriptions
    columns = ("customer_id", "external_id", "product", "sku", "quantity", "unit_price", "billing_interval",
               "start_date", "end_date", "status", "note", "source")
    with engine.connect() as conn:
        rows = conn.execute(select(*(s.c[c] for c in columns)).order_by(s.c.id)).mappings().all()
    return [dict(r) for r in rows]


def test_clean_sample_preview_apply_reimport_and_undo(engine):
    ids = seed_sample_customers(engine)
    before = counts(engine)
    plan, preview = import_subscriptions(engine, sample("abonnementer-clean.xlsx"))
    assert preview == {"run_id": None, "dry_run": True, "rows": 5, "created": 4, "updated": 0, "unchanged": 0,
                       "skipped_locked": 0, "unmatched": 1,
                       "errors": [{"row": 6, "message": "no customer in the Hub has the name 'Hjørnet Café'"}]}
    assert counts(engine) == before  # a dry run writes nothing, not even a run

    _plan, applied = import_subscriptions(engine, sample("abonnementer-clean.xlsx"), apply=True, **ADMIN)
    assert applied == {**preview, "dry_run": False, "run_id": applied["run_id"]}
    run = get_run(engine, applied["run_id"])
    assert run["kind"] == "import-subscriptions" and run["status"] == "succeeded"
    assert run["parameters"] == {"file": "abonnementer-clean.xlsx", "sheet": "Abonnementer"}
    assert run["stats"]["created"] == 4
    after = counts(engine)
    assert after["subscriptions"] == 4 and after["changes"] == before["changes"] + 4
    stored = subscriptions(engine)
    assert stored[0] == {"customer_id": ids[1001], "external_id": "A-5001", "product": "Microsoft 365 Business Standard",
                         "sku": "M365-BS", "quantity": 12, "unit_price": Decimal("89.50"), "billing_interval": "monthly",
                         "start_date": date(2024, 1, 1), "end_date": None, "status": "active", "note": None,
                         "source": "bmc-office"}
    assert stored[3]["status"] == "cancelled" and stored[3]["end_date"] == date(2025, 5, 14)

    _plan, again = import_subscriptions(engine, sample("abonnementer-clean.xlsx"), apply=True, **ADMIN)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 4)
    assert counts(engine)["changes"] == after["changes"]  # the second import changed nothing

    undo_run(engine, applied["run_id"], user=ADMIN["user"], role="operator")
    assert counts(engine)["subscriptions"] == 0
    assert counts(engine)["customers"] == 3


def test_messy_sample_name_match_and_rejections(engine):
    ids = seed_sample_customers(engine)
    _plan, result = import_subscriptions(engine, sample("abonnementer-messy.xlsx"), apply=True, **ADMIN)
    assert (result["rows"], result["created"], result["unmatched"]) == (6, 2, 0)
    assert [e["row"] for e in result["errors"]] == [6, 7, 8, 9]
    assert result["errors"][0]["message"] .endswith("CVR number '29910252' fails the modulus-11 check")
    stored = subscriptions(engine)
    assert [(s["customer_id"], s["product"], s["unit_price"]) for s in stored] == [
        (ids[1001], "Microsoft 365 Business Basic", Decimal("45.00")),
        (ids[1002], "Support-aftale", Decimal("1234.50")),  # row 5: matched by name only
    ]
    assert all(s["external_id"] is None for s in stored)
    _plan, again = import_subscriptions(engine, sample("abonnementer-messy.xlsx"), apply=True, **ADMIN)
    assert (again["created"], again["unchanged"]) == (0, 2)  # identity: customer, product, start date


def test_changed_row_is_updated_with_an_audit_entry_per_field(engine, tmp_path):
    ids = seed_sample_customers(engine)
    row = [1001, "Nordlys", None, "600001", "Backup", 1, 100, "Måned", "01-01-2024", "Aktiv"]
    import_subscriptions(engine, write_xlsx(tmp_path / "a.xlsx", {"Abonnementer": [HEADER, row]}), apply=True, **ADMIN)
    changed = [1001, "Nordlys", None, 600001, "Backup", 3, "100,00", "Kvartal", "01-01-2024", "Aktiv"]
    plan, preview = import_subscriptions(engine, write_xlsx(tmp_path / "b.xlsx", {"Abonnementer": [HEADER, changed]}))
    assert (preview["updated"], preview["created"]) == (1, 0)
    assert plan.items[0].changes == {"quantity": (1, 3), "billing_interval": ("monthly", "quarterly")}
    result = apply_plan(engine, plan, **ADMIN)
    with engine.connect() as conn:
        logged = conn.execute(text("SELECT field, old_value, new_value FROM changes WHERE run_id = :r ORDER BY field"),
                              {"r": result["run_id"]}).all()
    assert [tuple(r) for r in logged] == [("billing_interval", '"monthly"', '"quarterly"'), ("quantity", "1", "3")]
    assert subscriptions(engine)[0]["customer_id"] == ids[1001]
    undo_run(engine, result["run_id"], user=ADMIN["user"], role="operator")
    assert subscriptions(engine)[0]["quantity"] == 1


def test_locked_customer_keeps_its_subscriptions(engine, tmp_path):
    ids = seed_sample_customers(engine)
    import_subscriptions(engine, sample("abonnementer-clean.xlsx"), apply=True, **ADMIN)
    set_subscriptions_locked(engine, ids[1001], True, user="seed")
    before = subscriptions(engine)
    rows = [HEADER,
            [1001, "Nordlys", None, "A-5001", "Changed product", 99, 1, "År", "01-01-2024", "Opsagt"],
            [1001, "Nordlys", None, "A-9999", "New product", 1, 1, "År", "01-01-2024", "Aktiv"],
            [1002, "Østergaard", None, "A-5003", "Firewall managed", 5, 1250, "Kvartal", "01-07-2023", "Aktiv"]]
    _plan, result = import_subscriptions(engine, write_xlsx(tmp_path / "l.xlsx", {"Abonnementer": rows}), apply=True,
                                         **ADMIN)
    assert (result["skipped_locked"], result["updated"], result["created"]) == (2, 1, 0)
    after = subscriptions(engine)
    assert [s for s in after if s["customer_id"] == ids[1001]] == [s for s in before if s["customer_id"] == ids[1001]]


def test_customer_match_rules(engine, tmp_path):
    ids = seed_sample_customers(engine)
    create_customer(engine, {"name": "Twin ApS"}, user="seed")
    create_customer(engine, {"name": "Twin A/S"}, user="seed")
    rows = [HEADER,
            [1001, None, "20756438", None, "P1", 1, 1, None, "01-01-2024", None],  # number vs CVR
            [None, "Twin", None, None, "P2", 1, 1, None, "01-01-2024", None],  # ambiguous name
            [None, None, "13585628", None, "P3", 1, 1, None, "01-01-2024", None],  # by CVR
            [4242, None, None, None, "P4", 1, 1, None, "01-01-2024", None],  # unknown number
            [4242, "Blåbær IT", None, None, "P5", 1, 1, None, "01-01-2024", None],  # name, but number contradicts
            [None, "BLÅBÆR-IT i/s", None, None, "P6", 1, 1, None, "01-01-2024", None],  # name only
            [None, None, None, None, "P7", 1, 1, None, "01-01-2024", None]]
    plan, result = import_subscriptions(engine, write_xlsx(tmp_path / "m.xlsx", {"Abonnementer": rows}))
    outcomes = {i.row: (i.outcome, i.customer_id, i.message) for i in plan.items}
    assert outcomes[2] == ("rejected", None, "customer number 1001 is 'Nordlys Rådgivning ApS' but CVR 20756438 is "
                                             "'Østergaard & Søn A/S'")
    assert outcomes[3][:2] == ("unmatched", None) and "fits 2 customers" in outcomes[3][2]
    assert outcomes[4] == ("create", ids[1001], None)
    assert outcomes[5] == ("unmatched", None, "no customer in the Hub has customer number 4242")
    assert outcomes[6] == ("rejected", None, "customer number 4242 contradicts customer 'Blåbær IT I/S', whose "
                                             "e-conomic number is 1003")
    assert outcomes[7] == ("create", ids[1003], None)
    assert outcomes[8] == ("rejected", None, "no customer number, CVR or customer name")
    assert (result["rows"], result["unmatched"], len(result["errors"])) == (7, 2, 5)


def test_duplicate_rows_in_one_file_are_rejected(engine, tmp_path):
    seed_sample_customers(engine)
    row = [1001, None, None, "X-1", "P", 1, 1, None, "01-01-2024", None]
    plan, result = import_subscriptions(engine, write_xlsx(tmp_path / "d.xlsx", {"Abonnementer": [HEADER, row, row]}))
    assert result["created"] == 1 and result["errors"] == [{"row": 3, "message": "the same subscription as row 2"}]


def test_apply_needs_operator_and_a_fresh_preview(engine):
    ids = seed_sample_customers(engine)
    before = counts(engine)
    with pytest.raises(NotAllowed):
        import_subscriptions(engine, sample("abonnementer-clean.xlsx"), apply=True, user="v", role="viewer")
    assert counts(engine) == before
    plan = plan_import(engine, read_export(sample("abonnementer-clean.xlsx")))
    set_subscriptions_locked(engine, ids[1002], True, user="seed")
    before = counts(engine)
    with pytest.raises(PlanOutdated, match="preview the file again"):
        apply_plan(engine, plan, **ADMIN)
    assert counts(engine) == before


def test_error_report_neutralises_formulas(engine, tmp_path):
    seed_sample_customers(engine)
    rows = [HEADER, [1001, "@SUM(A1)", None, None, "+cmd", "-1", "@x", None, "01-01-2024", None]]
    plan, _ = import_subscriptions(engine, write_xlsx(tmp_path / "e.xlsx", {"Abonnementer": rows}))
    assert neutralize("=1+1") == "'=1+1" and neutralize("-2") == "'-2" and neutralize("ok") == "ok"
    report = list(csv.reader(io.StringIO(error_report_csv(plan).decode("utf-8-sig")), delimiter=";"))
    assert report[0][:3] == ["row", "outcome", "message"]
    assert report[1][0] == "2" and report[1][1] == "rejected" and "'+cmd" in report[1] and "'-1" in report[1]
    assert all(not cell.startswith(("=", "+", "-", "@")) for cell in report[1])
    sheet = load_workbook(io.BytesIO(error_report_xlsx(plan))).active
    cells = [c.value for c in next(sheet.iter_rows(min_row=2, max_row=2))]
    assert all(not (isinstance(c, str) and c.startswith(("=", "+", "-", "@"))) for c in cells)
    assert sheet.cell(2, 1).value == 2


def test_cli_preview_apply_json_and_exit_codes(engine, tmp_path, capsys):
    seed_sample_customers(engine)
    path = str(sample("abonnementer-clean.xlsx"))
    assert main(["import-subscriptions", path, "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["dry_run"] is True and preview["run_id"] is None and preview["created"] == 4
    assert main(["import-subscriptions", path, "--apply", "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["run_id"] == list_runs(engine)[0]["run_id"] and applied["created"] == 4
    assert main(["import-subscriptions", path, "--apply", "--sheet", "Abonnementer", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["created"] == 0
    assert main(["import-subscriptions", path]) == 0
    assert "preview" in capsys.readouterr().out

    bad = tmp_path / "export.csv"
    bad.write_text("Kundenr;Produkt\n")
    before = counts(engine)
    assert main(["import-subscriptions", str(bad), "--apply"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: export.csv: CSV files are not supported; save the export as .xlsx\n"
    assert main(["import-subscriptions", str(bad), "--apply", "--json"]) == 2
    payload = json.loads(capsys.readouterr().out)
    assert payload["run_id"] is None and payload["errors"][0]["row"] is None
    assert main(["import-subscriptions", path, "--sheet", "Nope"]) == 2
    assert "no sheet named 'Nope'" in capsys.readouterr().err
    assert counts(engine) == before


def test_created_rows_are_logged_like_audit_insert_rows(engine, tmp_path):
    """On PostgreSQL new rows go in by COPY; the rows and the audit entries must equal the generic path's."""
    from lib.audit import encode_value

    ids = seed_sample_customers(engine)
    header = [*HEADER, "Bemærkning"]
    row = [1001, None, None, "T-1", "Tab\there", 2, "1.234,50", "År", "01-01-2024", "Pause", "back\\slash\nline 2"]
    plan, _ = import_subscriptions(engine, write_xlsx(tmp_path / "t.xlsx", {"Abonnementer": [header, row]}))
    expected = plan.items[0].values
    result = apply_plan(engine, plan, **ADMIN)
    stored = subscriptions(engine)[0]
    assert stored["product"] == "Tab\there" and stored["note"] == "back\\slash\nline 2"
    assert stored["unit_price"] == Decimal("1234.50") and stored["customer_id"] == ids[1001]
    with engine.connect() as conn:
        logged = conn.execute(text("SELECT action, field, old_value, new_value, changed_by FROM changes "
                                   "WHERE run_id = :r"), {"r": result["run_id"]}).one()
    assert tuple(logged) == ("insert", "*", None, encode_value(expected), ADMIN["user"])


def _small_batches(monkeypatch) -> None:
    """Chunks and COPY batches of a few rows, so a small file goes through many of them (and the writer
    thread on PostgreSQL)."""
    from lib import bulk_copy, subscription_import

    monkeypatch.setattr(subscription_import, "FIRST_CHUNK_ROWS", 3)
    monkeypatch.setattr(subscription_import, "ONE_PASS_CHUNK_ROWS", 7)
    monkeypatch.setattr(bulk_copy, "FIRST_BATCH_ROWS", 2)
    monkeypatch.setattr(bulk_copy, "BACKGROUND_BATCH_ROWS", 10)


def _run_entries(engine, run_id: int) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT action, field, old_value, new_value, changed_by FROM changes WHERE run_id = :r ORDER BY id"),
            {"r": run_id})]


def test_one_pass_apply_writes_what_preview_then_apply_writes(engine, tmp_path, monkeypatch):
    """`--apply` validates, plans and writes chunk by chunk; the result must be the page's preview-then-apply,
    for every outcome: create, update, unchanged, locked, unmatched, rejected, repeated rows."""
    _small_batches(monkeypatch)
    ids = seed_sample_customers(engine)
    locked = create_customer(engine, {"name": "Låst ApS", "economic_customer_number": 1009}, user="seed")
    base = [HEADER] + [[1001 + n % 3, None, None, f"B-{n}", f"Produkt {n % 5}", 1 + n % 4, 100 + n, "Måned",
                        "01-01-2024", "Aktiv"] for n in range(30)]
    base.append([1009, None, None, "L-1", "Låst", 1, 1, "År", "01-01-2024", "Aktiv"])
    import_subscriptions(engine, write_xlsx(tmp_path / "base.xlsx", {"Abonnementer": base}), apply=True, **ADMIN)
    set_subscriptions_locked(engine, locked, True, user="seed")
    rows = [HEADER]
    for n in range(60):
        kind = n % 10
        if kind == 0:
            rows.append([1001, None, None, f"B-{n % 30}", f"Produkt {n % 5}", 9, "1.234,50", "Kvartal", "01-01-2024",
                         "Opsagt"])  # an update
        elif kind == 1:
            rows.append([1009, None, None, f"L-{n}", "Låst", 1, 1, "År", "01-01-2024", "Aktiv"])  # locked customer
        elif kind == 2:
            rows.append([4242, None, None, f"U-{n}", "Ukendt", 1, 1, "År", "01-01-2024", "Aktiv"])  # unmatched
        elif kind == 3:
            rows.append([1002, None, None, f"X-{n}", "Fejl", -1, "tolv", "Ugentlig", "32-01-2024", "Aktiv"])  # bad
        elif kind == 4:
            rows.append(list(rows[-5]) if n > 10 else [1003, None, None, "D-1", "Dobbelt", 1, 1, "År", "01-01-2024",
                                                       "Aktiv"])  # repeats a row that creates
        else:
            rows.append([1001 + n % 3, "Nogen", None, f"N-{n}", f"Nyt {n}", n, n * 10.5, "Halvår",
                         date(2024, 1 + n % 12, 1), "Aktiv"])  # a create
    rows += [[], [None, "I alt"]]
    path = write_xlsx(tmp_path / "new.xlsx", {"Abonnementer": rows})
    start = subscriptions(engine)

    plan, one_pass = import_subscriptions(engine, path, apply=True, **ADMIN)
    after_one_pass, entries = subscriptions(engine), _run_entries(engine, one_pass["run_id"])
    undo_run(engine, one_pass["run_id"], user=ADMIN["user"], role="operator")
    assert sorted(subscriptions(engine), key=repr) == sorted(start, key=repr)
    two_step = apply_plan(engine, plan_import(engine, read_export(path)), **ADMIN)

    assert {k: v for k, v in one_pass.items() if k != "run_id"} == {k: v for k, v in two_step.items() if k != "run_id"}
    assert (one_pass["created"], one_pass["updated"], one_pass["skipped_locked"], one_pass["unmatched"]) == (31, 3, 6, 6)
    assert sum("the same subscription as row" in e["message"] for e in one_pass["errors"]) == 5 + 3
    assert sorted(subscriptions(engine), key=repr) == sorted(after_one_pass, key=repr)
    # the same entries; on SQLite the one pass writes each chunk's creates and updates together (its commits are
    # per chunk), on PostgreSQL all creates first, as apply does
    assert sorted(_run_entries(engine, two_step["run_id"])) == sorted(entries)
    changed_fields = sum(len(i.changes) for i in plan.items if i.outcome == "update")
    assert changed_fields >= 3 * 4 and len(entries) == 31 + changed_fields  # whole-row per create, one per field
    assert ids[1001] in {s["customer_id"] for s in after_one_pass}
    assert get_run(engine, one_pass["run_id"])["stats"]["created"] == 31
    assert plan.row_count == 60  # counted as it went; only errors and updates are kept (memory follows the chunk)
    assert {i.outcome for i in plan.items} == {"update", "rejected", "unmatched"}


def test_one_pass_apply_that_fails_midway(engine, tmp_path, monkeypatch):
    """A batch the database refuses after earlier batches went in: on PostgreSQL the whole import rolls back
    (one transaction); on SQLite, which commits chunk by chunk so other writers are not locked out, the chunks
    before it are kept, the failed run says how many rows it committed, and undo reverts them. Either way the
    run is recorded as failed, with the reason."""
    _small_batches(monkeypatch)
    seed_sample_customers(engine)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE subscriptions ADD CONSTRAINT test_small_quantity CHECK (quantity < 50)"))
        else:
            conn.execute(text("CREATE TRIGGER test_small_quantity BEFORE INSERT ON subscriptions "
                              "WHEN NEW.quantity >= 50 BEGIN SELECT RAISE(ABORT, 'test_small_quantity'); END"))
    rows = [HEADER] + [[1001, None, None, f"Q-{n}", "Produkt", 1 if n < 40 else 60, 10, "Måned", "01-01-2024",
                        "Aktiv"] for n in range(41)]
    before = counts(engine)
    with pytest.raises(Exception, match="test_small_quantity"):  # noqa: B017 - the driver's IntegrityError
        import_subscriptions(engine, write_xlsx(tmp_path / "q.xlsx", {"Abonnementer": rows}), apply=True, **ADMIN)
    after = counts(engine)
    failed = list_runs(engine, kind="import-subscriptions")[0]
    assert failed["status"] == "failed" and "test_small_quantity" in failed["error"]
    if engine.dialect.name == "sqlite":
        kept = failed["stats"]["created"]
        assert kept == failed["stats"]["rows_committed"] == 38  # chunks of 3, then 7: rows 1-38 of 41
        assert after["subscriptions"] - before["subscriptions"] == kept
        undo_run(engine, failed["run_id"], user=ADMIN["user"], role="operator")
        after = counts(engine)
    assert after["subscriptions"] == before["subscriptions"]


def test_the_command_line_preview_counts_a_chunk_at_a_time_and_says_what_the_whole_plan_says(engine, tmp_path,
                                                                                             capsys):
    """`import-subscriptions FILE` keeps only counts and errors (memory follows the chunk); its JSON is the one
    the library's applicable preview gives, over more than one chunk."""
    from tests.test_excel_reader import DANISH_HEADER
    from tests.test_import_preview_bounded import long_export_rows

    seed_sample_customers(engine)
    path = write_xlsx(tmp_path / "long.xlsx", {"Abonnementer": [DANISH_HEADER, *long_export_rows()]})
    plan, whole = import_subscriptions(engine, path)
    assert main(["import-subscriptions", str(path), "--json"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert streamed == json.loads(json.dumps(whole, default=str))
    assert streamed["rows"] == 2540 and len(streamed["errors"]) == 1240 and plan.tally is None
    counted = preview_import(engine, open_export(path))
    assert (counted.row_count, len(counted.items)) == (2540, 1240)  # the errors only, not a row per row
    assert counted.summary() == plan.summary()
