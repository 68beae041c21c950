"""Demo customers and their fit with the sandbox data set."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from lib.cli import main
from lib.cvr import is_valid_cvr
from lib.cvr_client import CvrClient
from lib.demo_data import load_demo_data
from lib.errors import InputError
from lib.sandbox import SANDBOX_USER_AGENT, dataset, running_sandbox


def test_load_into_empty_table_then_refuse(engine):
    counts = load_demo_data(engine)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM customers")).mappings().all()
    assert counts["customers"] == len(rows) >= 10
    assert counts["with_cvr"] >= 2 and counts["without_cvr"] >= 5
    assert counts["linked_economic"] >= 2 and counts["linked_vtiger"] >= 1 and counts["linked_simplycrm"] >= 1
    assert all(is_valid_cvr(r["cvr_number"]) for r in rows if r["cvr_number"])
    assert any(ch in "".join(r["name"] for r in rows) for ch in "æøåÆØÅ")
    with pytest.raises(InputError, match="empty"):
        load_demo_data(engine)


def test_command_json(engine, capsys):
    assert main(["demo-data", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["customers"] == len(dataset.hub_customers())
    assert main(["demo-data"]) == 2
    assert "empty" in capsys.readouterr().err


def test_sandbox_finds_hub_customers_without_cvr():
    """Hub customers without CVR that are in the register can be found by name in the cvrapi simulator."""
    missing = [c for c in dataset.COMPANIES if c.in_hub and not c.hub_has_cvr and c.in_cvr_register]
    assert len(missing) >= 5
    with running_sandbox() as sb, CvrClient(sb.cvrapi.url, SANDBOX_USER_AGENT) as client:
        for company in missing:
            found = client.search_name(company.hub_name or company.name)
            assert found and found[0].cvr == company.cvr, company.name
        decoy = client.search_name("Møller Byg")
        assert decoy and decoy[0].name == "Møller Byggeservice ApS"  # similar name, different company


def test_dataset_cross_links_are_consistent():
    economic_numbers = {c["customerNumber"] for c in dataset.economic_customers()}
    hub = dataset.hub_customers()
    linked = {r["economic_customer_number"] for r in hub if r["economic_customer_number"]}
    assert linked - economic_numbers == {9009}  # the one deliberately stale link
    vtiger_ids = {a["id"] for a in dataset.crm_accounts("vtiger")}
    assert {r["vtiger_account_id"] for r in hub if r["vtiger_account_id"]} <= vtiger_ids
    assert len({c.cvr for c in dataset.COMPANIES}) == len(dataset.COMPANIES)


def test_shipped_sample_export_is_the_generated_one(tmp_path):
    """samples/abonnementer-demo.xlsx holds exactly the rows the generator makes (regenerate it when they change)."""
    from openpyxl import load_workbook

    from lib.sandbox.demo_export import SAMPLE_PATH, demo_export_rows

    shipped = [tuple(r) for r in load_workbook(SAMPLE_PATH).active.iter_rows(min_row=4, values_only=True)]
    assert shipped == demo_export_rows()


def test_try_it_path_demo_data_then_sample_import_apply_and_undo(engine, capsys):
    """README's try-it path: demo customers, the shipped export previews with work to do, applies, undoes."""
    from lib.sandbox.demo_export import SAMPLE_PATH

    assert main(["demo-data", "--json"]) == 0
    capsys.readouterr()
    assert main(["import-subscriptions", str(SAMPLE_PATH), "--json"]) == 0
    preview = json.loads(capsys.readouterr().out)
    assert preview["created"] == 2 * len(dataset.hub_customers()) and preview["unmatched"] == 1
    assert len(preview["errors"]) == 2
    assert main(["import-subscriptions", str(SAMPLE_PATH), "--apply", "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)
    assert applied["created"] == preview["created"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == applied["created"]
    assert main(["undo", str(applied["run_id"]), "--json"]) == 0
    capsys.readouterr()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar_one() == 0
