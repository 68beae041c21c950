-- Jobs run in a worker process: a run can be asked to cancel (and ends 'cancelled'), records which process
-- runs it, and previews are stored server-side (job_plans) so a person can come back and approve later.
-- SQLite cannot change a CHECK constraint, so runs is rebuilt with the same ids and indexes. run_locks, the
-- only table whose foreign key points at runs, is set aside and rebuilt around it, and the new table's own
-- references name itself so dropping the old table finds no child rows (foreign keys stay on throughout).
CREATE TABLE run_locks_kept AS SELECT kind, run_id, owner, acquired_at, heartbeat_at FROM run_locks;
DROP TABLE run_locks;
CREATE TABLE runs_rebuilt (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'succeeded', 'failed', 'stopped', 'stale', 'cancelled')),
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
    undone_by_run_id INTEGER REFERENCES runs_rebuilt (id),
    undoes_run_id INTEGER REFERENCES runs_rebuilt (id),
    cancel_requested_at TIMESTAMP,
    cancel_requested_by TEXT,
    worker TEXT
);
INSERT INTO runs_rebuilt (id, kind, status, dry_run, triggered_by, started_at, finished_at, heartbeat_at,
                          progress_done, progress_total, progress_message, stats, error, parameters,
                          undone_by_run_id, undoes_run_id)
    SELECT id, kind, status, dry_run, triggered_by, started_at, finished_at, heartbeat_at, progress_done,
           progress_total, progress_message, stats, error, parameters, undone_by_run_id, undoes_run_id
    FROM runs ORDER BY id;
DROP TABLE runs;
ALTER TABLE runs_rebuilt RENAME TO runs;
CREATE INDEX runs_kind_started ON runs (kind, started_at);
CREATE INDEX runs_triggered_by ON runs (triggered_by);
CREATE TABLE run_locks (
    kind TEXT PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id),
    owner TEXT NOT NULL,
    acquired_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    heartbeat_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT INTO run_locks (kind, run_id, owner, acquired_at, heartbeat_at)
    SELECT kind, run_id, owner, acquired_at, heartbeat_at FROM run_locks_kept;
DROP TABLE run_locks_kept;

CREATE TABLE job_plans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    run_id INTEGER,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires_at TIMESTAMP NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    parameters TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}',
    plan TEXT NOT NULL,
    applied_run_id INTEGER
);
CREATE INDEX job_plans_kind_created ON job_plans (kind, created_at);
CREATE INDEX job_plans_run ON job_plans (run_id);
