-- Added later, as in the original system: a locked customer's subscriptions are frozen.
ALTER TABLE customers ADD COLUMN subscriptions_locked BOOLEAN NOT NULL DEFAULT FALSE;
