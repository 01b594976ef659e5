-- Till store schema, version 1.
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC); money is
-- INTEGER minor units; quantities are INTEGER milli-units.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Gapless counters (bill numbers, customer numbers, chain positions). They
-- advance inside the transaction that uses the number, so a rollback returns it.
CREATE TABLE sequences (
    name TEXT PRIMARY KEY,
    last INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE customers (
    rid           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    number        TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    name_key      TEXT NOT NULL,            -- case-folded name for sorting
    phone_raw     TEXT,
    phone_e164    TEXT,
    phone_shared  INTEGER NOT NULL DEFAULT 0,
    email_raw     TEXT,
    email         TEXT,
    email_shared  INTEGER NOT NULL DEFAULT 0,
    address_line1 TEXT NOT NULL DEFAULT '',
    address_line2 TEXT NOT NULL DEFAULT '',
    city          TEXT NOT NULL DEFAULT '',
    region        TEXT NOT NULL DEFAULT '',
    postal_code   TEXT NOT NULL DEFAULT '',
    country       TEXT NOT NULL DEFAULT '',
    stage         TEXT NOT NULL,
    tags          TEXT NOT NULL DEFAULT '[]', -- JSON array, sorted, case-folded
    notes         TEXT NOT NULL DEFAULT '',
    birthday      TEXT,                       -- YYYY-MM-DD
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    version       INTEGER NOT NULL,
    deleted_at    INTEGER,
    merged_into   TEXT,
    erased_at     INTEGER,
    extra         TEXT NOT NULL DEFAULT '{}'  -- fields written by newer apps, kept untouched
);

-- One live customer per identity phone / email: the backstop of find-or-create.
CREATE UNIQUE INDEX customers_live_phone ON customers(phone_e164)
    WHERE phone_e164 IS NOT NULL AND phone_shared = 0
      AND deleted_at IS NULL AND merged_into IS NULL;
CREATE UNIQUE INDEX customers_live_email ON customers(email)
    WHERE email IS NOT NULL AND email_shared = 0
      AND deleted_at IS NULL AND merged_into IS NULL;
CREATE INDEX customers_by_name ON customers(name_key, rid);
CREATE INDEX customers_by_created ON customers(created_at, rid);
CREATE INDEX customers_by_updated ON customers(updated_at, rid);

CREATE TABLE customer_tags (
    tag          TEXT NOT NULL,
    customer_rid INTEGER NOT NULL REFERENCES customers(rid),
    PRIMARY KEY (tag, customer_rid)
) WITHOUT ROWID;
CREATE INDEX customer_tags_by_customer ON customer_tags(customer_rid);

-- Maintained in the transaction of the bill that moves them.
CREATE TABLE customer_metrics (
    customer_id TEXT PRIMARY KEY,
    visits      INTEGER NOT NULL,
    total_spent INTEGER NOT NULL,
    first_visit INTEGER,
    last_visit  INTEGER
) WITHOUT ROWID;

-- The transactional search index: holds live customers only.
CREATE VIRTUAL TABLE customers_fts USING fts5(
    name, number, phone, email,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TABLE bills (
    rid            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    number         TEXT NOT NULL UNIQUE,
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
    chain_pos      INTEGER UNIQUE,
    prev_hash      TEXT,
    hash           TEXT,
    version        INTEGER NOT NULL,
    UNIQUE (device_id, seq)
);
CREATE INDEX bills_by_customer ON bills(customer_id, opened_at DESC, rid DESC)
    WHERE customer_id IS NOT NULL;
CREATE INDEX bills_by_refund_of ON bills(refund_of) WHERE refund_of IS NOT NULL;

CREATE TABLE bill_lines (
    bill_rid       INTEGER NOT NULL REFERENCES bills(rid),
    line_no        INTEGER NOT NULL,
    product_code   TEXT NOT NULL,
    name           TEXT NOT NULL,
    qty_milli      INTEGER NOT NULL,
    unit_price     INTEGER NOT NULL,
    discount       INTEGER NOT NULL,
    tax_category   TEXT NOT NULL,
    tax_rate_bp    INTEGER NOT NULL,
    bill_discount  INTEGER NOT NULL,           -- share of the bill discount
    net            INTEGER NOT NULL,
    tax            INTEGER NOT NULL,
    gross          INTEGER NOT NULL,
    refund_of_line INTEGER,
    refunded_qty   INTEGER NOT NULL DEFAULT 0,
    refunded_gross INTEGER NOT NULL DEFAULT 0,
    refunded_tax   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bill_rid, line_no)
) WITHOUT ROWID;

CREATE TABLE bill_payments (
    bill_rid  INTEGER NOT NULL REFERENCES bills(rid),
    seq       INTEGER NOT NULL,
    method    TEXT NOT NULL,                   -- cash, card, other
    amount    INTEGER NOT NULL,                -- applied to the bill
    tendered  INTEGER NOT NULL,                -- handed over (cash may exceed amount)
    reference TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (bill_rid, seq)
) WITHOUT ROWID;

-- The append-only change log: audit trail and sync outbox in one.
CREATE TABLE changes (
    seq       INTEGER PRIMARY KEY,
    change_id TEXT NOT NULL UNIQUE,
    entity    TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    op        TEXT NOT NULL,
    fields    TEXT NOT NULL,                   -- JSON: new values of the fields that changed
    before    TEXT,                            -- JSON: their previous values
    hlc       TEXT NOT NULL,
    device_id TEXT NOT NULL,
    staff_id  TEXT NOT NULL,
    at        INTEGER NOT NULL,
    origin    TEXT NOT NULL DEFAULT 'local',
    pushed_at INTEGER
);
CREATE INDEX changes_by_entity ON changes(entity_id, seq);
CREATE INDEX changes_outbox ON changes(seq) WHERE pushed_at IS NULL AND origin = 'local';

-- Rows are never deleted, and who/what/when never changes. The only rewrite
-- is erasure redacting personal values in `fields` and `before`.
CREATE TRIGGER changes_no_delete BEFORE DELETE ON changes
BEGIN
    SELECT RAISE(ABORT, 'the change log is append-only');
END;
CREATE TRIGGER changes_no_rewrite
BEFORE UPDATE OF seq, change_id, entity, entity_id, op, hlc, device_id, staff_id, at, origin ON changes
BEGIN
    SELECT RAISE(ABORT, 'the change log is append-only');
END;
