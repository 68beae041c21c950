-- Template Module: the first schema (SQLite and any database without a variant file).
-- Every table and index a module creates starts with its prefix, template_module_; anything else is refused.
CREATE TABLE template_module_items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    note TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX template_module_items_title ON template_module_items (title);
