-- Till sync-server schema, version 6: a customer's aliases found by customer.

-- Dedup walks a changed customer's aliases as well as its own keys
-- (`Ledger::aliases_of`), once per customer change: without this index each
-- walk scans every alias of the tenant.
CREATE INDEX aliases_by_customer ON aliases(tenant, customer);
