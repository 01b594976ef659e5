-- Till store schema, version 5: a sale writes fewer pages.
--
-- Every index a sale inserts into is one more page in the WAL at commit.
-- A sale wrote 16 pages (plus splits), the raw baseline 3. Dropped here:
-- - the unique indexes on bills.number, bills.chain_pos and
--   bills(device_id, seq), and bills_by_seq(seq): one unique index on
--   (seq, device_id, store_id) now serves number lookups (the number ends
--   in its sequence), searches by trailing digits, the per-device walk of
--   verify(), and keeps a number from being issued twice;
-- - the chain's head is kept beside its position in `sequences`, so
--   linking a bill no longer looks up the previous one by position;
-- - changes_outbox_by_entity: changes_by_entity (entity_id, seq) finds the
--   same rows, and sync reads the few changes of one record.
--
-- bills.last_line_no: the highest line number a bill ever had, so a line
-- number is never issued twice on one bill, not even after the last line
-- was removed.
--
-- Rebuilding `bills` needs foreign keys off (see `schema::migrate`).

ALTER TABLE sequences ADD COLUMN head TEXT;
UPDATE sequences SET head = (SELECT hash FROM bills WHERE chain_pos = sequences.last)
 WHERE name = 'bill_chain';

CREATE TABLE bills_v5 (
    rid            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    number         TEXT NOT NULL,
    seq            INTEGER NOT NULL,          -- the device sequence behind number
    store_id       TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    staff_id       TEXT NOT NULL,
    customer_id    TEXT,
    customer_phone TEXT,                      -- lookup only, never for linking
    currency       TEXT NOT NULL,
    price_mode     TEXT NOT NULL,             -- 'exclusive' | 'inclusive'
    kind           TEXT NOT NULL,             -- 'sale' | 'refund'
    refund_of      TEXT,
    status         TEXT NOT NULL,             -- open, paid, voided, partly_refunded, refunded
    bill_discount  INTEGER NOT NULL DEFAULT 0,
    subtotal       INTEGER NOT NULL DEFAULT 0,
    discount_total INTEGER NOT NULL DEFAULT 0,
    tax_total      INTEGER NOT NULL DEFAULT 0,
    total          INTEGER NOT NULL DEFAULT 0,
    paid_total     INTEGER NOT NULL DEFAULT 0,
    change_due     INTEGER NOT NULL DEFAULT 0,
    refunded_total INTEGER NOT NULL DEFAULT 0,
    opened_at      INTEGER NOT NULL,
    closed_at      INTEGER,
    voided_at      INTEGER,
    chain_pos      INTEGER,                   -- this device's bills only
    prev_hash      TEXT,
    hash           TEXT,
    version        INTEGER NOT NULL,
    last_line_no   INTEGER NOT NULL DEFAULT 0
);
INSERT INTO bills_v5 (rid, id, number, seq, store_id, device_id, staff_id, customer_id,
    customer_phone, currency, price_mode, kind, refund_of, status, bill_discount, subtotal,
    discount_total, tax_total, total, paid_total, change_due, refunded_total, opened_at,
    closed_at, voided_at, chain_pos, prev_hash, hash, version, last_line_no)
SELECT rid, id, number, seq, store_id, device_id, staff_id, customer_id,
    customer_phone, currency, price_mode, kind, refund_of, status, bill_discount, subtotal,
    discount_total, tax_total, total, paid_total, change_due, refunded_total, opened_at,
    closed_at, voided_at, chain_pos, prev_hash, hash, version,
    COALESCE((SELECT MAX(line_no) FROM bill_lines WHERE bill_rid = bills.rid), 0)
FROM bills;
DROP TABLE bills;
ALTER TABLE bills_v5 RENAME TO bills;

CREATE INDEX bills_by_customer ON bills(customer_id, opened_at DESC, rid DESC)
    WHERE customer_id IS NOT NULL;
CREATE INDEX bills_by_refund_of ON bills(refund_of) WHERE refund_of IS NOT NULL;
CREATE UNIQUE INDEX bills_by_seq ON bills(seq, device_id, store_id);

DROP INDEX changes_outbox_by_entity;
