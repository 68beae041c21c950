"""`--json` prints one object on every exit path (issue #15), including usage errors and unexpected failures."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from lib.cli import main


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["undo", "999", "--json"], 2, "there is no run with id 999"),
    (["modules", "enable", "nosuch", "--json"], 2, "no module named 'nosuch'"),
    (["undo", "abc", "--json"], 2, "invalid int value: 'abc'"),
    (["nosuch", "--json"], 2, "invalid choice: 'nosuch'"),
    (["import-subscriptions", "/nonexistent/x.xlsx", "--json"], 2, "x.xlsx"),
])
def test_every_error_exit_prints_one_json_object_with_error(engine, capsys, argv, code, says):
    with pytest.raises(SystemExit) if argv[0] in ("nosuch",) or argv[1:2] == ["abc"] else _no_exit() as exited:
        assert main(argv) == code
    if exited is not None:
        assert exited.value.code == code
    out, err = capsys.readouterr()
    payload = json.loads(out)  # exactly one object: json.loads refuses trailing text
    assert says in payload["error"] and says in err


def test_an_unexpected_failure_still_prints_one_object_and_exits_1(engine, capsys):
    with engine.begin() as conn:  # a database someone broke by hand: the query fails with a driver error
        conn.execute(text("DROP TABLE run_locks"))
        conn.execute(text("DROP TABLE runs"))
    assert main(["runs", "--json"]) == 1
    out, err = capsys.readouterr()
    payload = json.loads(out)
    assert list(payload) == ["error"] and "runs" in payload["error"]
    assert err.strip().splitlines()[-1] == f"error: {payload['error']}"


def test_without_json_an_error_is_one_line_on_stderr_and_nothing_on_stdout(engine, capsys):
    assert main(["undo", "999"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: there is no run with id 999\n"


class _no_exit:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
