-- Customers: the one clean register every other system is linked to.
CREATE TABLE customers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL CHECK (length(trim(name)) > 0),
    cvr_number TEXT UNIQUE CHECK (cvr_number IS NULL OR (length(cvr_number) = 8 AND cvr_number NOT GLOB '*[^0-9]*')),
    economic_customer_number INTEGER UNIQUE,
    vtiger_account_id TEXT,
    simplycrm_account_id TEXT,
    email TEXT,
    phone TEXT,
    address TEXT,
    zip TEXT,
    city TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX customers_name ON customers (lower(name));
CREATE INDEX customers_vtiger_account ON customers (vtiger_account_id);
CREATE INDEX customers_simplycrm_account ON customers (simplycrm_account_id);
