"""Customer text inputs: limits, control characters, literal search, and edits that check what the form showed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from lib.audit import insert_row
from lib.customers import (
    FIELD_LIMITS,
    SEARCH_LIMIT,
    STALE,
    CustomerChanged,
    CustomerInvalid,
    create_customer,
    get_customer,
    search_customers,
    update_customer,
)
from lib.errors import InputError
from lib.runs import list_runs
from lib.text_input import TextRefused
from tests.conftest import IN_CI

TEXT_COLUMNS = [f for f in FIELD_LIMITS if f not in ("cvr_number", "economic_customer_number")]


def _names(page) -> list[str]:
    return sorted(r["name"] for r in page.rows)


def _no_run_left_running(engine) -> None:
    assert not [r for r in list_runs(engine) if r["status"] == "running"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM run_locks")).scalar() == 0


# --- search -------------------------------------------------------------------------------------------------------

@pytest.fixture
def tricky_names(engine):
    for name in ("50% rabat ApS", "500 ApS", "Alfa_Beta A/S", "AlfaXBeta A/S", "Back\\slash ApS", "Plain ApS"):
        create_customer(engine, {"name": name}, user="seed")
    return engine


@pytest.mark.parametrize(("query", "expected"), [
    ("50%", ["50% rabat ApS"]),
    ("%", ["50% rabat ApS"]),
    ("_", ["Alfa_Beta A/S"]),
    ("alfa_beta", ["Alfa_Beta A/S"]),
    ("\\", ["Back\\slash ApS"]),
    ("back\\slash", ["Back\\slash ApS"]),
    ("\\s", ["Back\\slash ApS"]),
    ("plain", ["Plain ApS"]),
])
def test_search_takes_like_metacharacters_literally(tricky_names, query, expected):
    page = search_customers(tricky_names, query)
    assert _names(page) == expected and page.total == len(expected)


def test_search_has_a_length_limit_and_refuses_control_characters(tricky_names):
    assert search_customers(tricky_names, "a" * SEARCH_LIMIT).total == 0
    with pytest.raises(TextRefused, match=f"at most {SEARCH_LIMIT}"):
        search_customers(tricky_names, "a" * 100_000)
    with pytest.raises(TextRefused, match="U\\+0000"):
        search_customers(tricky_names, "Plain\x00")
    with pytest.raises(TextRefused, match="U\\+0007"):
        search_customers(tricky_names, "\x07")
    assert search_customers(tricky_names, "²").total == 0  # a non-ASCII digit is text, not a number
    assert issubclass(TextRefused, InputError) and TextRefused.exit_code == 2


# letters whose lower() on PostgreSQL equals Python's casefold(), LIKE's metacharacters, and no digits (a
# number also searches CVR and e-conomic numbers)
_ALPHABET = "aAbBøØ%_\\ ."


@settings(max_examples=25, deadline=None, derandomize=IN_CI,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(names=st.lists(st.text(_ALPHABET, min_size=1, max_size=6).filter(str.strip), min_size=1, max_size=6),
       query=st.text(_ALPHABET, min_size=1, max_size=3).filter(str.strip))
def test_search_finds_exactly_the_names_containing_the_query(engine, names, query):
    """The model: a name matches when it contains the trimmed query, case-folded, as a literal substring."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM customers"))
        for name in names:
            insert_row(conn, "customers", {"name": name.strip()}, run_id=None, user="prop")
    expected = sorted(n.strip() for n in names if query.strip().casefold() in n.strip().casefold())
    assert _names(search_customers(engine, query, page_size=100)) == expected


# --- names and fields ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["x" * 1_000_000, "Nul\x00ApS", "Tab\tApS", "Esc\x1b[31mApS", "Lone\ud800"])
def test_a_bad_name_is_refused_with_a_message_and_blocks_nobody(engine, name):
    with pytest.raises(CustomerInvalid) as err:
        create_customer(engine, {"name": name}, user="mallory")
    assert "name" in err.value.errors
    assert len(str(err.value)) < 300  # the message never echoes the input
    assert list_runs(engine) == []  # refused before any run started
    _no_run_left_running(engine)
    cid = create_customer(engine, {"name": "Next ApS"}, user="ann")  # nobody is blocked
    with pytest.raises(CustomerInvalid, match="phone"):
        update_customer(engine, cid, {"phone": "1\x002"}, user="mallory")
    update_customer(engine, cid, {"phone": "12 34 56 78"}, user="ann")
    assert get_customer(engine, cid)["phone"] == "12 34 56 78"
    _no_run_left_running(engine)


def test_every_field_has_a_limit_at_exactly_its_number(engine):
    cid = create_customer(engine, {"name": "n" * FIELD_LIMITS["name"]}, user="ann")
    for field in TEXT_COLUMNS:
        limit = FIELD_LIMITS[field]
        value = ("a@b.dk".rjust(limit, "a")) if field == "email" else "y" * limit
        update_customer(engine, cid, {field: value}, user="ann")
        with pytest.raises(CustomerInvalid, match=f"at most {limit}"):
            update_customer(engine, cid, {field: value + "y"}, user="ann")
    with pytest.raises(CustomerInvalid, match="at most"):
        update_customer(engine, cid, {"cvr_number": "1" * 1_000_000}, user="ann")
    _no_run_left_running(engine)


def test_the_database_holds_the_same_limits(engine):
    """Migration 012: a writer that skips lib/customers.py still cannot store an over-long value."""
    for field in TEXT_COLUMNS:
        limit = FIELD_LIMITS[field]
        with engine.begin() as conn:
            cid = insert_row(conn, "customers", {"name": "Limit ApS", field: "z" * limit} if field != "name"
                             else {"name": "z" * limit}, run_id=None, user="sql")
        with pytest.raises(IntegrityError, match=field), engine.begin() as conn:
            conn.execute(text(f"UPDATE customers SET {field} = :v WHERE id = :id"), {"v": "z" * (limit + 1), "id": cid})
        with pytest.raises(IntegrityError, match=field), engine.begin() as conn:
            values = {"name": "Other ApS", field: "z" * (limit + 1)} if field != "name" else {"name": "z" * (limit + 1)}
            insert_row(conn, "customers", values, run_id=None, user="sql")


def test_the_database_refuses_nul_in_customer_text(engine):
    """SQLite by migration 012's trigger, PostgreSQL by itself."""
    refused = (IntegrityError, ValueError, DBAPIError)
    with pytest.raises(refused), engine.begin() as conn:
        conn.execute(text("INSERT INTO customers (name) VALUES (:n)"), {"n": "Nul\x00ApS"})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM customers")).scalar() == 0


def test_a_row_over_the_limit_from_before_shows_which_field(engine):
    """A write to a row that breaks the database limit names the field instead of a driver message."""
    cid = create_customer(engine, {"name": "Old ApS"}, user="ann")
    with pytest.raises(CustomerInvalid) as err:
        update_customer(engine, cid, {"city": "c" * (FIELD_LIMITS["city"] + 1)}, user="ann")
    assert "city" in err.value.errors


# --- edits check what the form showed ------------------------------------------------------------------------------

def test_save_writes_only_the_changed_field_of_the_record_shown(engine):
    a = create_customer(engine, {"name": "Alfa ApS", "email": "a@alfa.dk", "address": "Alfavej 1", "city": "Aarhus"},
                        user="seed")
    b = create_customer(engine, {"name": "Beta A/S", "email": "b@beta.dk", "phone": "11111111"}, user="seed")
    opened = get_customer(engine, b)
    changed = update_customer(engine, b, {"phone": "22222222"}, user="ann", expected=opened)
    assert set(changed) == {"phone"}
    after = get_customer(engine, b)
    assert {k: v for k, v in after.items() if k not in ("phone", "updated_at")} == \
        {k: v for k, v in opened.items() if k not in ("phone", "updated_at")}
    assert get_customer(engine, a)["name"] == "Alfa ApS"


def test_a_change_meanwhile_refuses_the_save_and_writes_nothing(engine):
    cid = create_customer(engine, {"name": "Alfa ApS", "phone": "11111111"}, user="seed")
    opened = {k: v for k, v in get_customer(engine, cid).items() if k not in ("id", "created_at", "updated_at")}
    update_customer(engine, cid, {"city": "Odense"}, user="bob")  # someone else, after Ann opened the form
    with pytest.raises(CustomerChanged, match=STALE) as err:
        update_customer(engine, cid, {"phone": "22222222"}, user="ann", expected=opened)
    assert err.value.fields == ["city"] and err.value.exit_code == 2
    stored = get_customer(engine, cid)
    assert stored["phone"] == "11111111" and stored["city"] == "Odense"
    failed = list_runs(engine)[0]
    assert failed["status"] == "failed"
    _no_run_left_running(engine)
    # reloaded: the save goes through
    fresh = {k: v for k, v in stored.items() if k not in ("id", "created_at", "updated_at")}
    assert set(update_customer(engine, cid, {"phone": "22222222"}, user="ann", expected=fresh)) == {"phone"}


def test_the_same_change_made_meanwhile_is_no_conflict(engine):
    cid = create_customer(engine, {"name": "Alfa ApS", "phone": "11111111", "economic_customer_number": 7},
                          user="seed")
    opened = get_customer(engine, cid)
    opened.pop("updated_at")
    update_customer(engine, cid, {"phone": "22222222"}, user="bob")
    assert update_customer(engine, cid, {"phone": "22222222"}, user="ann", expected=opened) == {}
    assert update_customer(engine, cid, {"zip": "8000"}, user="ann",
                           expected={"economic_customer_number": "7", "zip": ""}) == {"zip": (None, "8000")}


def test_expected_names_only_customer_fields(engine):
    cid = create_customer(engine, {"name": "Alfa ApS"}, user="seed")
    with pytest.raises(InputError, match="not customer fields: password"):
        update_customer(engine, cid, {"phone": "1"}, user="ann", expected={"password": "x"})


def test_012_applies_over_legacy_long_values_and_the_row_stays_fixable(db_url, tmp_path):
    """An installation that already stored an over-long value upgrades; the value is kept and can be shortened."""
    from lib.db import get_engine
    from lib.migrations import migrate, migrate_core
    from tests.conftest import ROOT

    engine = get_engine(db_url)
    before = tmp_path / "until-011"
    before.mkdir()
    for path in sorted((ROOT / "migrations").glob("*.sql")):
        if path.name < "012":
            (before / path.name).write_bytes(path.read_bytes())
    migrate(engine, before)
    legacy = "a" * 1000
    with engine.begin() as conn:
        cid = conn.execute(text("INSERT INTO customers (name, address) VALUES ('Legacy ApS', :a) RETURNING id"),
                           {"a": legacy}).scalar_one()
    assert 12 in [f.version for f in migrate_core(engine)]
    assert get_customer(engine, cid)["address"] == legacy
    with pytest.raises(CustomerInvalid) as err:  # a write checks the whole row: the message names the long field
        update_customer(engine, cid, {"phone": "12345678"}, user="ann")
    assert err.value.errors == {"address": f"is longer than the {FIELD_LIMITS['address']} characters the database allows"}
    update_customer(engine, cid, {"address": "Kort vej 1", "phone": "12345678"}, user="ann")
    stored = get_customer(engine, cid)
    assert stored["address"] == "Kort vej 1" and stored["phone"] == "12345678"
    _no_run_left_running(engine)
