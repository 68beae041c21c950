"""Template Module: list, create, edit and delete items — the example every module starts from.

All writes go through `write()`, which honours the module's safety switches:
READ_ONLY (nothing is written, the page says so) and DRY_RUN (the page shows what would be written).
"""

import json

import streamlit as st
from sqlalchemy import text

from lib.modules import get_module_config, module_connection, module_table

MODULE = "template_module"
TABLE = module_table(MODULE, "items")
ENV = f"MODULES__{MODULE.upper()}__"
READ_ONLY = bool(get_module_config(MODULE, "READ_ONLY", True))
DRY_RUN = bool(get_module_config(MODULE, "DRY_RUN", True))
FLASH = f"{MODULE}_flash"


def write(sql: str, params: dict, done: str) -> None:
    """The one path that changes data; reruns the page so the list shows the result."""
    if READ_ONLY:
        st.session_state[FLASH] = ("warning", "Read-only: nothing was written.", None)
    elif DRY_RUN:
        shown = f"{sql}\n-- parameters: {json.dumps(params, ensure_ascii=False)}"
        st.session_state[FLASH] = ("info", "Dry run: this would be written; nothing was.", shown)
    else:
        with module_connection(MODULE) as conn:  # confined to the module's own tables
            conn.execute(text(sql), params)
        st.session_state[FLASH] = ("success", done, None)
    st.rerun()


def load_items() -> list[dict]:
    with module_connection(MODULE) as conn:
        rows = conn.execute(text(f"SELECT id, title, note, updated_at FROM {TABLE} ORDER BY id")).mappings()
        return [dict(r) for r in rows]


st.title("Template Module")
if READ_ONLY:
    st.info("Read-only mode: changes are switched off. An admin can switch READ_ONLY off in this module's "
            f"settings on the Modules page (or set `{ENV}READ_ONLY=false`).")
elif DRY_RUN:
    st.info("Dry-run mode: changes are shown, not saved. An admin can switch DRY_RUN off in this module's "
            f"settings on the Modules page (or set `{ENV}DRY_RUN=false`).")

if FLASH in st.session_state:
    kind, message, shown = st.session_state.pop(FLASH)
    getattr(st, kind)(message)
    if shown:
        st.code(shown, language="sql")

items = load_items()
st.subheader(f"Items ({len(items)})")
if items:
    st.dataframe(items, hide_index=True)
else:
    st.caption("No items yet.")

with st.form(f"{MODULE}_create", clear_on_submit=True):
    st.markdown("**Add an item**")
    title = st.text_input("Title", key=f"{MODULE}_new_title")
    note = st.text_area("Note", key=f"{MODULE}_new_note")
    if st.form_submit_button("Add", key=f"{MODULE}_add", disabled=READ_ONLY):
        if not title.strip():
            st.error("A title is required.")
        else:
            write(f"INSERT INTO {TABLE} (title, note) VALUES (:title, :note)",
                  {"title": title.strip(), "note": note.strip() or None}, f"Added “{title.strip()}”.")

if items:
    by_id = {item["id"]: item for item in items}
    with st.form(f"{MODULE}_edit"):
        st.markdown("**Edit or delete an item**")
        chosen = st.selectbox("Item", list(by_id), format_func=lambda i: f"{i}: {by_id[i]['title']}",
                              key=f"{MODULE}_edit_id")
        new_title = st.text_input("New title (empty: keep)", key=f"{MODULE}_edit_title")
        new_note = st.text_input("New note (empty: keep)", key=f"{MODULE}_edit_note")
        left, right = st.columns(2)
        save = left.form_submit_button("Save", key=f"{MODULE}_save", disabled=READ_ONLY)
        delete = right.form_submit_button("Delete", key=f"{MODULE}_delete", disabled=READ_ONLY)
    if save:
        item = by_id[chosen]
        write(f"UPDATE {TABLE} SET title = :title, note = :note, updated_at = CURRENT_TIMESTAMP WHERE id = :id",
              {"id": chosen, "title": new_title.strip() or item["title"], "note": new_note.strip() or item["note"]},
              f"Saved item {chosen}.")
    if delete:
        write(f"DELETE FROM {TABLE} WHERE id = :id", {"id": chosen}, f"Deleted item {chosen}.")
