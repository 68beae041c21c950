-- A module's job logs the changes to its own tables in the audit log, so undo restores them (lib.modules
-- .audited_update). A module's connection runs as the module's role, which may not write `changes`; this
-- function, owned by the Hub's user, writes one entry for it, and only for a table that role owns (module
-- tables are created by, and owned by, the module's role), during a run that is still running. The caller
-- is the SET ROLE in force (`role`): SECURITY DEFINER changes the privileges, not that setting. EXECUTE stays
-- with PUBLIC (the check above is the guard), so module roles made before this migration need no new grant.
CREATE FUNCTION hub_log_change(p_run_id BIGINT, p_table TEXT, p_row_id BIGINT, p_action TEXT, p_field TEXT,
                               p_old TEXT, p_new TEXT, p_user TEXT) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $hub$
DECLARE
    caller TEXT := pg_catalog.current_setting('role');
BEGIN
    IF caller IS NULL OR caller = 'none' OR NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r ON r.oid = c.relowner
        WHERE c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(p_table)) AND r.rolname = caller
    ) THEN
        RAISE EXCEPTION 'permission denied: role % may log changes only of tables it owns, not %', caller, p_table
            USING ERRCODE = '42501';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM runs WHERE id = p_run_id AND status = 'running' AND NOT dry_run) THEN
        RAISE EXCEPTION 'permission denied: run % is not a running run', p_run_id USING ERRCODE = '42501';
    END IF;
    INSERT INTO changes (run_id, table_name, row_id, action, field, old_value, new_value, changed_by, at)
    VALUES (p_run_id, p_table, p_row_id, p_action, p_field, p_old, p_new, p_user, now() AT TIME ZONE 'utc');
END $hub$;
