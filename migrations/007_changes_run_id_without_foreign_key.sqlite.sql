-- The audit log's run_id becomes a plain column (see the PostgreSQL file for why). SQLite cannot drop a
-- constraint, so the table is rebuilt with the same columns, ids and indexes.
CREATE TABLE changes_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER,
    table_name TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    changed_by TEXT NOT NULL DEFAULT 'system',
    at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO changes_rebuilt (id, run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at)
    SELECT id, run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at FROM changes;
DROP TABLE changes;
ALTER TABLE changes_rebuilt RENAME TO changes;
CREATE INDEX changes_run ON changes (run_id);
CREATE INDEX changes_row ON changes (table_name, row_id, field);
