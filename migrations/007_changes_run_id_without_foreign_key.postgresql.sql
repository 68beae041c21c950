-- The audit log's run_id becomes a plain column. `changes` is append-only and the busiest table: a bulk
-- import writes one entry per created subscription, and the foreign key cost the server a check per entry
-- (about a quarter of the time it spends inserting them). Runs are never deleted, every run_id is written
-- by lib/audit.py for a run that lib/runs.py has already committed, and `manage.py doctor` reports any
-- entry whose run is missing.
ALTER TABLE changes DROP CONSTRAINT IF EXISTS changes_run_id_fkey;
