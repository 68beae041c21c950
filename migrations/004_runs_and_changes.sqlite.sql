-- Job runs, the field-level audit log, and the per-kind run lock.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed', 'stopped', 'stale')),
    dry_run BOOLEAN NOT NULL DEFAULT FALSE,
    triggered_by TEXT NOT NULL DEFAULT 'system',
    started_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    finished_at TIMESTAMP,
    heartbeat_at TIMESTAMP,
    progress_done INTEGER,
    progress_total INTEGER,
    progress_message TEXT,
    stats TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    undone_by_run_id INTEGER REFERENCES runs (id),
    undoes_run_id INTEGER REFERENCES runs (id)
);
CREATE INDEX runs_kind_started ON runs (kind, started_at);
CREATE INDEX runs_triggered_by ON runs (triggered_by);

CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER REFERENCES runs (id),
    table_name TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('insert', 'update', 'delete')),
    field TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    changed_by TEXT NOT NULL DEFAULT 'system',
    at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX changes_run ON changes (run_id);
CREATE INDEX changes_row ON changes (table_name, row_id, field);

CREATE TABLE run_locks (
    kind TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id),
    owner TEXT NOT NULL,
    acquired_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    heartbeat_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
