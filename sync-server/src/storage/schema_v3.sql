-- Till sync-server schema, version 3: bootstrap and log compaction.

-- The compaction horizon: the log holds no entry at or below it, and a pull
-- from a cursor below it is told to bootstrap again.
ALTER TABLE tenants ADD COLUMN horizon INTEGER NOT NULL DEFAULT 0;

-- A bootstrap pages through a store's bills in id order.
CREATE INDEX bills_by_store ON bills(tenant, store, id);
