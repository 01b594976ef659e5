-- Till sync-server schema, version 1 (embedded SQLite backend).
-- Timestamps are INTEGER milliseconds since the Unix epoch (UTC).

CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    last_seq   INTEGER NOT NULL DEFAULT 0,  -- the tenant's server sequence; its row is the push lock
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE stores (
    tenant     TEXT NOT NULL REFERENCES tenants(id),
    id         TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;

-- Tokens are kept only as SHA-256 hex digests.
CREATE TABLE devices (
    tenant       TEXT NOT NULL,
    store        TEXT NOT NULL,
    id           TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    enrolled_at  INTEGER NOT NULL,
    revoked_at   INTEGER,
    last_seen_at INTEGER,
    clock_clamps INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, store, id),
    FOREIGN KEY (tenant, store) REFERENCES stores(tenant, id)
) WITHOUT ROWID;

-- Every change id ever pushed and what became of it: the idempotency ledger.
CREATE TABLE received (
    tenant         TEXT NOT NULL,
    change_id      TEXT NOT NULL,
    device         TEXT NOT NULL,
    received_at    INTEGER NOT NULL,
    server_seq     INTEGER,                 -- set when accepted
    reject_reason  TEXT,                    -- set when rejected
    reject_message TEXT
);
CREATE UNIQUE INDEX received_by_change ON received(tenant, change_id);

-- Materialised records: merge state (values + stamps) as JSON, plus the
-- columns queries need.
CREATE TABLE customers (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    state       TEXT NOT NULL,
    phone_e164  TEXT,                       -- identity phone (not shared), for dedup
    email       TEXT,                       -- identity email (not shared), for dedup
    live        INTEGER NOT NULL,           -- neither deleted nor merged
    updated_seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX customers_by_phone ON customers(tenant, phone_e164)
    WHERE phone_e164 IS NOT NULL AND live = 1;
CREATE INDEX customers_by_email ON customers(tenant, email)
    WHERE email IS NOT NULL AND live = 1;

CREATE TABLE bills (
    tenant      TEXT NOT NULL,
    id          TEXT NOT NULL,
    store       TEXT NOT NULL,
    customer_id TEXT,
    state       TEXT NOT NULL,
    updated_seq INTEGER NOT NULL,
    PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX bills_by_customer ON bills(tenant, customer_id) WHERE customer_id IS NOT NULL;

-- What devices pull: the effective change at each sequence. `store` is NULL
-- for tenant-wide records (customers) and the bill's store otherwise.
CREATE TABLE log (
    tenant    TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    store     TEXT,
    entity    TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    change    TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
) WITHOUT ROWID;
CREATE INDEX log_by_entity ON log(tenant, entity_id, seq);
