"""AppTest sequences on the Customers page (#15.1, #15.7, #17.5): forms belong to the record they show."""

from __future__ import annotations

from lib.customers import FIELD_LIMITS, STALE, create_customer, get_customer, update_customer
from lib.runs import list_runs
from tests.apptest import app, no_exception, texts


def _seed(engine) -> tuple[int, int]:
    a = create_customer(engine, {"name": "Alfa ApS", "email": "info@alfa.dk", "phone": "11111111",
                                 "address": "Alfavej 1", "zip": "8000", "city": "Aarhus"}, user="seed")
    b = create_customer(engine, {"name": "Beta A/S", "email": "post@beta.dk", "phone": "22222222"}, user="seed")
    return a, b


def _without_phone(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("phone", "updated_at")}


def test_open_a_then_b_edit_phone_saves_only_the_phone_of_b(engine):
    a, b = _seed(engine)
    before_a, before_b = get_customer(engine, a), get_customer(engine, b)
    at = no_exception(app("app_pages/customers.py").run())
    assert at.selectbox(key="customer_pick").value == a  # the first row is open
    assert at.text_input(key=f"e_{a}_name").value == "Alfa ApS"
    at.selectbox(key="customer_pick").set_value(b).run()
    assert at.subheader[0].value == "Beta A/S"
    assert at.text_input(key=f"e_{b}_name").value == "Beta A/S"  # B's values, not A's
    assert at.text_input(key=f"e_{b}_email").value == "post@beta.dk"
    assert at.text_input(key=f"e_{b}_address").value == ""
    at.text_input(key=f"e_{b}_phone").input("33333333")
    at.button(key="save_customer").click().run()
    no_exception(at)
    assert "Saved: phone." in texts(at)
    after_b = get_customer(engine, b)
    assert after_b["phone"] == "33333333" and _without_phone(after_b) == _without_phone(before_b)
    assert get_customer(engine, a) == before_a
    assert list_runs(engine)[0]["stats"]["changed_fields"] == ["phone"]
    # the form now shows what is stored, and a second save with nothing changed writes nothing
    assert at.text_input(key=f"e_{b}_phone").value == "33333333"
    runs = len(list_runs(engine))
    at.button(key="save_customer").click().run()
    assert "Nothing changed." in texts(at) and len(list_runs(engine)) == runs


def test_a_change_meanwhile_is_refused_then_reload_and_save(engine):
    a, _ = _seed(engine)
    at = no_exception(app("app_pages/customers.py").run())
    update_customer(engine, a, {"city": "Odense"}, user="bob@bmc.dk")  # someone else, while the form is open
    at.text_input(key=f"e_{a}_phone").input("99999999")
    at.button(key="save_customer").click().run()
    no_exception(at)
    assert STALE in texts(at) and "City" in texts(at)
    stored = get_customer(engine, a)
    assert stored["phone"] == "11111111" and stored["city"] == "Odense"
    assert at.text_input(key=f"e_{a}_phone").value == "99999999"  # what the person typed is still there
    assert at.text_input(key=f"e_{a}_city").value == "Aarhus"  # the form still shows what it opened with
    at.button(key=f"reload_{a}").click().run()
    assert at.text_input(key=f"e_{a}_city").value == "Odense"
    at.text_input(key=f"e_{a}_phone").input("99999999")
    at.button(key="save_customer").click().run()
    assert "Saved: phone." in texts(at)
    stored = get_customer(engine, a)
    assert stored["phone"] == "99999999" and stored["city"] == "Odense"


def test_create_opens_the_new_customer_and_it_can_be_edited(engine):
    _seed(engine)
    at = no_exception(app("app_pages/customers.py").run())
    at.text_input(key="n_name").input("Gamma IVS")
    at.text_input(key="n_city").input("Vejle")
    at.button(key="create_customer").click().run()
    no_exception(at)
    new_id = max(r["stats"].get("customer_id", 0) for r in list_runs(engine))
    assert f"Created customer {new_id}" in texts(at)
    assert at.selectbox(key="customer_pick").value == new_id
    assert at.subheader[0].value == "Gamma IVS"
    assert at.text_input(key=f"e_{new_id}_city").value == "Vejle"
    assert at.text_input(key="n_name").value == ""  # the create form is empty again
    at.text_input(key=f"e_{new_id}_phone").input("44444444")
    at.button(key="save_customer").click().run()
    assert "Saved: phone." in texts(at)
    assert get_customer(engine, new_id)["phone"] == "44444444"


def test_bad_input_on_the_page_gets_a_message_and_blocks_nobody(engine):
    _seed(engine)
    at = no_exception(app("app_pages/customers.py").run())
    at.text_input(key="n_name").input("x" * 1_000_000)
    at.button(key="create_customer").click().run()
    no_exception(at)  # the field takes at most FIELD_LIMITS["name"] characters (max_chars, checked by the server)
    assert len(at.text_input(key="n_name").value) <= FIELD_LIMITS["name"]
    assert len(list_runs(engine)) == 2
    at.text_input(key="n_name").input("Tab\there")
    at.button(key="create_customer").click().run()
    assert "control character U+0009" in texts(at)
    assert at.text_input(key="n_name").value == "Tab\there"  # nothing typed is lost
    assert not [r for r in list_runs(engine) if r["status"] == "running"]
    at.text_input(key="n_name").input("Delta ApS")
    at.button(key="create_customer").click().run()
    assert "Created customer" in texts(at)


def test_search_with_like_metacharacters_and_refusals(engine):
    for name in ("50% rabat ApS", "500 ApS", "Alfa_Beta A/S", "AlfaXBeta A/S"):
        create_customer(engine, {"name": name}, user="seed")
    at = no_exception(app("app_pages/customers.py").run())
    at.text_input(key="customer_search").input("50%").run()
    assert "1 customers" in texts(at)
    at.text_input(key="customer_search").input("_").run()
    assert "1 customers" in texts(at)
    at.text_input(key="customer_search").input("a\x00").run()
    no_exception(at)
    assert "Search not run: the search contains the control character U+0000" in texts(at)


def test_lock_toggle_shows_the_stored_state_after_a_change_elsewhere(engine):
    a, _ = _seed(engine)
    at = no_exception(app("app_pages/customers.py").run())
    assert at.toggle(key=f"lock_{a}").value is False
    update_customer(engine, a, {"subscriptions_locked": True}, user="bob@bmc.dk")
    at.run()
    assert at.toggle(key=f"lock_{a}").value is True
    at.toggle(key=f"lock_{a}").set_value(False).run()
    no_exception(at)
    assert get_customer(engine, a)["subscriptions_locked"] is False
    assert at.toggle(key=f"lock_{a}").value is False


def test_the_created_customer_leaves_the_list_when_the_search_changes(engine):
    a, _ = _seed(engine)
    for i in range(3):
        create_customer(engine, {"name": f"Gamma {i} ApS"}, user="seed")
    at = no_exception(app("app_pages/customers.py").run())
    at.text_input(key="n_name").input("Gamma")
    at.button(key="create_customer").click().run()
    new_id = at.selectbox(key="customer_pick").value
    assert get_customer(engine, new_id)["name"] == "Gamma" and at.text_input(key="customer_search").value == "Gamma"
    at.text_input(key="customer_search").input("Alfa").run()
    no_exception(at)
    assert at.selectbox(key="customer_pick").options == ["Alfa ApS (no CVR)"]
    assert at.selectbox(key="customer_pick").value == a
