-- Nothing to create on SQLite: a module session's authorizer (lib.module_sandbox) lets it INSERT into
-- `changes` and nothing else of it; undo refuses an entry of a module's run naming a table outside its prefix.
SELECT 1;
