"""AppTest of the import page (upload, preview, mapping, apply) and the subscriptions page."""

from __future__ import annotations

from sqlalchemy import text

from lib.runs import list_runs
from tests.apptest import app, no_exception, texts
from tests.jobs_wait import settle
from tests.test_excel_reader import DANISH_HEADER, sample, xlsx_bytes
from tests.test_import_preview_bounded import CREATES, REJECTED, UNMATCHED, long_export_rows
from tests.test_subscription_import import seed_sample_customers

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _subscription_count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one()


def test_upload_preview_and_apply(engine):
    seed_sample_customers(engine)
    at = no_exception(app("app_pages/import_subscriptions.py").run())
    data = sample("abonnementer-messy.xlsx").read_bytes()
    at.file_uploader(key="import_file").upload("abonnementer-messy.xlsx", data, XLSX).run()
    no_exception(settle(at, engine))
    shown = texts(at)
    assert "Rows=6" in shown and "Create=2" in shown and "Rejected=4" in shown
    assert "header on row 3" in shown
    assert at.selectbox(key="import_sheet").value == "Abonnementer"  # two sheets: a picker
    errors = at.dataframe[-1].value
    assert list(errors["row"]) == [6, 7, 8, 9]
    assert "E7: quantity -2 is negative" in list(errors["message"])
    assert _subscription_count(engine) == 0  # the preview wrote nothing

    at.multiselect(key="import_outcomes").set_value(["rejected"]).run()
    assert set(at.dataframe[1].value["outcome"]) == {"rejected"}

    at.button(key="import_apply").click().run()
    no_exception(settle(at, engine))
    run = list_runs(engine)[0]
    assert run["kind"] == "import-subscriptions" and not run["dry_run"] and run["stats"]["created"] == 2
    shown = texts(at)
    assert f"Applied as run {run['run_id']}: 2 created" in shown
    assert f"See run {run['run_id']} on the Runs page." in shown
    assert f"this preview was applied as run {run['run_id']}" in shown.lower()
    assert at.button(key="import_apply").disabled  # one apply per preview
    assert _subscription_count(engine) == 2

    at.button(key="import_again").click().run()
    shown = texts(no_exception(settle(at, engine)))
    assert "Create=0" in shown and "Unchanged=2" in shown  # the refreshed preview: nothing left to do
    assert at.button(key="import_apply").disabled


def test_unrecognised_header_is_mapped_by_hand(engine):
    seed_sample_customers(engine)
    data = xlsx_bytes({"Ark": [["Kundenr", "Ydelse", "Antal", "Startdato"], [1001, "Hosting", 2, "01-01-2024"]]})
    at = no_exception(app("app_pages/import_subscriptions.py").run())
    at.file_uploader(key="import_file").upload("odd.xlsx", data, XLSX).run()
    assert "no sheet has a header row with the required columns" in texts(settle(at, engine))
    at.selectbox(key="import_map_product").set_value(1).run()
    no_exception(settle(at, engine))
    assert "Create=1" in texts(at)
    at.button(key="import_apply").click().run()
    settle(at, engine)
    assert _subscription_count(engine) == 1


def test_refused_file_shows_the_reason(engine):
    at = no_exception(app("app_pages/import_subscriptions.py").run())
    at.file_uploader(key="import_file").upload("photo.xlsx", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, XLSX).run()
    no_exception(settle(at, engine))
    assert "photo.xlsx: not an Excel workbook (.xlsx/.xlsm)" in texts(at)


def test_viewer_is_refused(engine):
    seed_sample_customers(engine)
    at = app("app_pages/import_subscriptions.py")
    at.session_state["_hub_actor"] = __import__("lib.roles", fromlist=["Actor"]).Actor("v@bmc.dk", "viewer")
    at.run()
    assert "needs the operator role" in texts(at)
    assert not [u for u in at.get("file_uploader")]


def test_subscriptions_page_totals_and_filters(engine):
    seed_sample_customers(engine)
    from lib.subscription_import import import_subscriptions

    import_subscriptions(engine, sample("abonnementer-clean.xlsx"), apply=True, user="seed", role="admin")
    at = no_exception(app("app_pages/subscriptions.py").run())
    shown = texts(at)
    # 12 × 89.50 + 1 × 149 + 2 × 1250 / 3 = 2,056.33 (the cancelled yearly one adds nothing)
    assert "MRR=2.056,33 kr." in shown and "Subscriptions=4" in shown and "Active=3" in shown
    at.selectbox(key="subs_status").set_value("cancelled").run()
    no_exception(at)
    assert "Subscriptions=1" in texts(at) and "MRR=0,00 kr." in texts(at)


def test_a_long_preview_shows_its_first_rows_and_says_so(engine):
    """The stored preview keeps the first rows of each outcome (lib.subscription_import.PREVIEW_ROWS); the page
    counts the whole file and says how much of it the table and the error list show."""
    seed_sample_customers(engine)
    data = xlsx_bytes({"Abonnementer": [DANISH_HEADER, *long_export_rows()]})
    at = no_exception(app("app_pages/import_subscriptions.py").run())
    at.file_uploader(key="import_file").upload("long.xlsx", data, XLSX).run()
    shown = texts(no_exception(settle(at, engine)))
    total = CREATES + UNMATCHED + REJECTED
    assert f"Rows={total:,}".replace(",", ".") in shown and f"Create={CREATES:,}".replace(",", ".") in shown
    assert "Showing the first 1.000 (1.000 of each outcome) of 1.300 rows; the counts above are the whole file." in shown
    assert "Showing the first 1.000 of 1.240; the error report has them all." in shown
    assert len(at.dataframe[-1].value) == 1000
