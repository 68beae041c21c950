-- Module system state: what is enabled, which version is installed, the last error, and page views.
-- Portable SQL (SQLite and PostgreSQL). Changes are single-row writes, so no state is ever half-done.
CREATE TABLE module_state (
    name TEXT PRIMARY KEY,
    enabled BOOLEAN NOT NULL DEFAULT FALSE,
    installed_version TEXT,
    last_error TEXT,
    last_error_at TIMESTAMP,
    changed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    changed_by TEXT NOT NULL DEFAULT 'system'
);

CREATE TABLE module_page_views (
    module TEXT NOT NULL,
    page TEXT NOT NULL,
    views INTEGER NOT NULL DEFAULT 0,
    last_viewed_at TIMESTAMP,
    last_error TEXT,
    last_error_at TIMESTAMP,
    PRIMARY KEY (module, page)
);
