-- Till sync-server schema, version 2: authoritative dedup (till_core::sync::dedup).

-- The survivor a customer was merged into.
ALTER TABLE customers ADD COLUMN merged_into TEXT;
CREATE INDEX customers_by_survivor ON customers(tenant, merged_into)
    WHERE merged_into IS NOT NULL;

-- Identity keys a merge took off the merged customer (the loser's, or the
-- survivor's own replaced by a later one): they stay keys of the survivor.
-- `customer` may itself be merged away later; its survivor is followed.
CREATE TABLE aliases (
    tenant   TEXT NOT NULL,
    kind     TEXT NOT NULL,                 -- 'phone' (E.164) or 'email' (canonical)
    key      TEXT NOT NULL,
    customer TEXT NOT NULL,
    PRIMARY KEY (tenant, kind, key, customer)
) WITHOUT ROWID;

-- One row per customer folded into another: the MergeRecord as JSON
-- (before-images of both customers, the bills moved, the tombstones
-- re-pointed, the aliases added), enough to undo the merge.
CREATE TABLE merges (
    tenant   TEXT NOT NULL,
    seq      INTEGER NOT NULL,              -- the loser's tombstone entry in the log
    survivor TEXT NOT NULL,
    loser    TEXT NOT NULL,
    record   TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
CREATE INDEX merges_by_survivor ON merges(tenant, survivor);
CREATE INDEX merges_by_loser ON merges(tenant, loser);
