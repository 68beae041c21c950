-- Who signed in (first and last seen, with the role they got) and server-side sign-out: every identity of a
-- person issued before `not_before` (the ID token's iat) is refused, on every replica.
CREATE TABLE sign_ins (
    person TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    provider TEXT NOT NULL DEFAULT 'default',
    first_seen_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    not_before TIMESTAMP,
    ended_how TEXT CHECK (ended_how IN ('signed-out', 'revoked')),
    ended_by TEXT
);
CREATE INDEX sign_ins_last_seen ON sign_ins (last_seen_at);
