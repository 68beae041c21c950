-- Text limits on customers (the same numbers as lib/customers.py FIELD_LIMITS, as long as e-conomic's): one bad input can no longer
-- store a megabyte name. SQLite cannot add a CHECK to a table, so triggers hold the limits. Rows stored before
-- are not checked now; an update of one of these columns checks the whole row. length() stops at a NUL,
-- hence the byte checks.
CREATE TRIGGER customers_text_limits_insert BEFORE INSERT ON customers
BEGIN
    SELECT RAISE(ABORT, 'customers.name is longer than 255 characters')
        WHERE length(NEW.name) > 255 OR length(CAST(NEW.name AS BLOB)) > 1020;
    SELECT RAISE(ABORT, 'customers.name contains a NUL character')
        WHERE instr(CAST(NEW.name AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.vtiger_account_id is longer than 100 characters')
        WHERE length(NEW.vtiger_account_id) > 100 OR length(CAST(NEW.vtiger_account_id AS BLOB)) > 400;
    SELECT RAISE(ABORT, 'customers.vtiger_account_id contains a NUL character')
        WHERE instr(CAST(NEW.vtiger_account_id AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.simplycrm_account_id is longer than 100 characters')
        WHERE length(NEW.simplycrm_account_id) > 100 OR length(CAST(NEW.simplycrm_account_id AS BLOB)) > 400;
    SELECT RAISE(ABORT, 'customers.simplycrm_account_id contains a NUL character')
        WHERE instr(CAST(NEW.simplycrm_account_id AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.email is longer than 320 characters')
        WHERE length(NEW.email) > 320 OR length(CAST(NEW.email AS BLOB)) > 1280;
    SELECT RAISE(ABORT, 'customers.email contains a NUL character')
        WHERE instr(CAST(NEW.email AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.phone is longer than 255 characters')
        WHERE length(NEW.phone) > 255 OR length(CAST(NEW.phone AS BLOB)) > 1020;
    SELECT RAISE(ABORT, 'customers.phone contains a NUL character')
        WHERE instr(CAST(NEW.phone AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.address is longer than 510 characters')
        WHERE length(NEW.address) > 510 OR length(CAST(NEW.address AS BLOB)) > 2040;
    SELECT RAISE(ABORT, 'customers.address contains a NUL character')
        WHERE instr(CAST(NEW.address AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.zip is longer than 30 characters')
        WHERE length(NEW.zip) > 30 OR length(CAST(NEW.zip AS BLOB)) > 120;
    SELECT RAISE(ABORT, 'customers.zip contains a NUL character')
        WHERE instr(CAST(NEW.zip AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.city is longer than 100 characters')
        WHERE length(NEW.city) > 100 OR length(CAST(NEW.city AS BLOB)) > 400;
    SELECT RAISE(ABORT, 'customers.city contains a NUL character')
        WHERE instr(CAST(NEW.city AS BLOB), X'00') > 0;
END;

CREATE TRIGGER customers_text_limits_update BEFORE UPDATE OF name, vtiger_account_id, simplycrm_account_id, email, phone, address, zip, city ON customers
BEGIN
    SELECT RAISE(ABORT, 'customers.name is longer than 255 characters')
        WHERE length(NEW.name) > 255 OR length(CAST(NEW.name AS BLOB)) > 1020;
    SELECT RAISE(ABORT, 'customers.name contains a NUL character')
        WHERE instr(CAST(NEW.name AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.vtiger_account_id is longer than 100 characters')
        WHERE length(NEW.vtiger_account_id) > 100 OR length(CAST(NEW.vtiger_account_id AS BLOB)) > 400;
    SELECT RAISE(ABORT, 'customers.vtiger_account_id contains a NUL character')
        WHERE instr(CAST(NEW.vtiger_account_id AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.simplycrm_account_id is longer than 100 characters')
        WHERE length(NEW.simplycrm_account_id) > 100 OR length(CAST(NEW.simplycrm_account_id AS BLOB)) > 400;
    SELECT RAISE(ABORT, 'customers.simplycrm_account_id contains a NUL character')
        WHERE instr(CAST(NEW.simplycrm_account_id AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.email is longer than 320 characters')
        WHERE length(NEW.email) > 320 OR length(CAST(NEW.email AS BLOB)) > 1280;
    SELECT RAISE(ABORT, 'customers.email contains a NUL character')
        WHERE instr(CAST(NEW.email AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.phone is longer than 255 characters')
        WHERE length(NEW.phone) > 255 OR length(CAST(NEW.phone AS BLOB)) > 1020;
    SELECT RAISE(ABORT, 'customers.phone contains a NUL character')
        WHERE instr(CAST(NEW.phone AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.address is longer than 510 characters')
        WHERE length(NEW.address) > 510 OR length(CAST(NEW.address AS BLOB)) > 2040;
    SELECT RAISE(ABORT, 'customers.address contains a NUL character')
        WHERE instr(CAST(NEW.address AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.zip is longer than 30 characters')
        WHERE length(NEW.zip) > 30 OR length(CAST(NEW.zip AS BLOB)) > 120;
    SELECT RAISE(ABORT, 'customers.zip contains a NUL character')
        WHERE instr(CAST(NEW.zip AS BLOB), X'00') > 0;
    SELECT RAISE(ABORT, 'customers.city is longer than 100 characters')
        WHERE length(NEW.city) > 100 OR length(CAST(NEW.city AS BLOB)) > 400;
    SELECT RAISE(ABORT, 'customers.city contains a NUL character')
        WHERE instr(CAST(NEW.city AS BLOB), X'00') > 0;
END;
