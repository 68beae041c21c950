-- Answers from cvrapi.dk, by query, so the 50-a-day free quota is never spent twice on the same question.
CREATE TABLE IF NOT EXISTS cvr_cache (
    query_key TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    response TEXT,
    fetched_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
