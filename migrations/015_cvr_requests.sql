-- Requests sent to cvrapi.dk per quota day (Europe/Copenhagen date), so "lookups left today" counts every
-- request, not only the answers that were cached (errors, retries and connection tests are not cached).
CREATE TABLE cvr_requests (
    day TEXT PRIMARY KEY,
    requests INTEGER NOT NULL DEFAULT 0,
    last_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
