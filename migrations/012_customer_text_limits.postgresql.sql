-- Text limits on customers (the same numbers as lib/customers.py FIELD_LIMITS, as long as e-conomic's): one bad input can no longer
-- store a megabyte name. NOT VALID: rows stored before are not checked now, but any write to such a row is.
-- PostgreSQL refuses NUL in text by itself.
ALTER TABLE customers ADD CONSTRAINT customers_name_length CHECK (length(name) <= 255) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_vtiger_account_id_length CHECK (length(vtiger_account_id) <= 100) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_simplycrm_account_id_length CHECK (length(simplycrm_account_id) <= 100) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_email_length CHECK (length(email) <= 320) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_phone_length CHECK (length(phone) <= 255) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_address_length CHECK (length(address) <= 510) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_zip_length CHECK (length(zip) <= 30) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_city_length CHECK (length(city) <= 100) NOT VALID;
