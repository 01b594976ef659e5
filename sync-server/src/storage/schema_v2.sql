-- Till sync-server schema, version 2: authoritative dedup (till_core::sync::dedup).

-- The survivor a customer was merged into. A merged-away customer keeps its
-- identity keys in `phone_e164` and `email`: they stay keys of its survivor.
ALTER TABLE customers ADD COLUMN merged_into TEXT;
CREATE INDEX customers_merged_by_phone ON customers(tenant, phone_e164)
    WHERE phone_e164 IS NOT NULL AND merged_into IS NOT NULL;
CREATE INDEX customers_merged_by_email ON customers(tenant, email)
    WHERE email IS NOT NULL AND merged_into IS NOT NULL;
CREATE INDEX customers_by_survivor ON customers(tenant, merged_into)
    WHERE merged_into IS NOT NULL;

-- One row per customer folded into another: the MergeRecord as JSON
-- (before-images of both customers, the bills moved, the tombstones
-- re-pointed), enough to undo the merge.
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
