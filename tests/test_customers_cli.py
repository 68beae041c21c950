"""`manage.py customers`: the Customers page from a shell — literal search, preview then --apply, refusals exit 2."""

from __future__ import annotations

import json

from lib.cli import main
from lib.customers import create_customer, get_customer, update_customer
from lib.runs import list_runs


def _json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["customers", *argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_search_show_create_and_edit(engine, capsys):
    create_customer(engine, {"name": "500 ApS"}, user="seed")
    code, out = _json(capsys, "create", "name=50% rabat ApS", "city=Aarhus")
    assert code == 0 and out == {"dry_run": True, "create": {"name": "50% rabat ApS", "city": "Aarhus"}}
    assert len(list_runs(engine)) == 1  # the preview wrote nothing
    code, out = _json(capsys, "create", "name=50% rabat ApS", "city=Aarhus", "--apply")
    new_id = out["customer_id"]
    code, out = _json(capsys, "search", "50%")
    assert code == 0 and [r["id"] for r in out["customers"]] == [new_id] and out["total"] == 1
    code, out = _json(capsys, "edit", str(new_id), "phone=12345678", "--expect", "city=Aarhus", "--apply")
    assert code == 0 and out["changes"] == {"phone": [None, "12345678"]}
    code, out = _json(capsys, "show", str(new_id))
    assert out["customer"]["phone"] == "12345678" and out["customer"]["city"] == "Aarhus"


def test_refusals_exit_2_with_one_json_error_and_write_nothing(engine, capsys, monkeypatch):
    cid = create_customer(engine, {"name": "Alfa ApS", "city": "Aarhus"}, user="seed")
    update_customer(engine, cid, {"city": "Odense"}, user="bob")  # after the caller read "Aarhus"
    runs = len(list_runs(engine))
    cases = {
        ("edit", str(cid), "phone=1", "--expect", "city=Aarhus", "--apply"): "changed by someone else meanwhile",
        ("create", "name=Tab\there", "--apply"): "control character U+0009",
        ("create", "name=" + "x" * 300, "--apply"): "at most 255",
        ("edit", str(cid), "password=x"): "password: is not a customer field",
        ("show", "999"): "there is no customer with id 999",
        ("search", "a" * 201): "at most 200",
    }
    for argv, message in cases.items():
        code, out = _json(capsys, *argv)
        assert code == 2 and message in out["error"], (argv, out)
    monkeypatch.setenv("HUB_CLI_ROLE", "viewer")
    code, out = _json(capsys, "edit", str(cid), "phone=1", "--apply")
    assert code == 2 and "may not edit customers" in out["error"]
    assert get_customer(engine, cid)["phone"] is None
    assert not [r for r in list_runs(engine)[: len(list_runs(engine)) - runs] if r["status"] == "succeeded"]
    assert not [r for r in list_runs(engine) if r["status"] == "running"]
