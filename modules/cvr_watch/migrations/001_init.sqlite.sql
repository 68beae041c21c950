-- What the register said at the last check, per Hub customer (no foreign key: modules hold no rights on core tables).
CREATE TABLE cvr_watch_snapshots (
    customer_id INTEGER PRIMARY KEY,
    cvr TEXT NOT NULL,
    found BOOLEAN NOT NULL,
    name TEXT,
    address TEXT,
    zipcode TEXT,
    city TEXT,
    end_date TEXT,
    bankrupt BOOLEAN NOT NULL DEFAULT FALSE,
    credit_status TEXT,
    checked_at TIMESTAMP NOT NULL
);

-- One alert per customer, kind and new value; a later run never raises the same alert twice.
CREATE TABLE cvr_watch_alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id INTEGER NOT NULL,
    cvr TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('ceased', 'bankruptcy', 'name', 'address', 'not_found')),
    old_value TEXT,
    new_value TEXT NOT NULL,
    found_at TIMESTAMP NOT NULL,
    found_by_run_id INTEGER,
    acknowledged_at TIMESTAMP,
    acknowledged_by TEXT,
    applied_at TIMESTAMP,
    applied_by TEXT,
    applied_run_id INTEGER,
    UNIQUE (customer_id, kind, new_value)
);

CREATE INDEX cvr_watch_alerts_open ON cvr_watch_alerts (acknowledged_at, found_at);
