"""SQLAlchemy Core descriptions of the core tables, for typed bulk statements (the DDL lives in migrations/)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, DateTime, Integer, MetaData, Numeric, Table, Text

metadata = MetaData()

customers = Table(
    "customers", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("name", Text), Column("cvr_number", Text), Column("economic_customer_number", BigInteger),
    Column("vtiger_account_id", Text), Column("simplycrm_account_id", Text), Column("email", Text),
    Column("phone", Text), Column("address", Text), Column("zip", Text), Column("city", Text),
    Column("subscriptions_locked", Boolean), Column("created_at", DateTime), Column("updated_at", DateTime),
)

subscriptions = Table(
    "subscriptions", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("customer_id", BigInteger), Column("external_id", Text), Column("product", Text), Column("sku", Text),
    Column("quantity", Integer), Column("unit_price", Numeric(12, 2)), Column("billing_interval", Text),
    Column("start_date", Date), Column("end_date", Date), Column("status", Text), Column("note", Text),
    Column("source", Text), Column("created_at", DateTime), Column("updated_at", DateTime),
)

changes = Table(
    "changes", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("run_id", BigInteger), Column("table_name", Text), Column("row_id", BigInteger), Column("action", Text),
    Column("field", Text), Column("old_value", Text), Column("new_value", Text), Column("changed_by", Text),
    Column("at", DateTime),
)

BY_NAME = {t.name: t for t in (customers, subscriptions, changes)}
