-- Till sync-server schema, version 4: the customers a bill was moved off.

-- A bill opened for one customer and moved to another (or made a walk-in)
-- before payment keeps the first customer's phone in its log entries.
-- Erasing that customer finds the bill here (`till_core::sync::erasure`).
-- Moves made before this version are found in the log, where compaction
-- has not dropped them. A merge's moves are not kept: they stay with the
-- same person.
CREATE TABLE bill_past_customers (
    tenant      TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    bill_id     TEXT NOT NULL,
    PRIMARY KEY (tenant, customer_id, bill_id)
) WITHOUT ROWID;

INSERT OR IGNORE INTO bill_past_customers (tenant, customer_id, bill_id)
SELECT tenant, change ->> '$.before.customer_id', entity_id FROM log
WHERE entity = 'bill' AND change LIKE '%"customer_id":"%'
    AND change ->> '$.op' IS NOT 'move_customer'
    AND change ->> '$.before.customer_id' IS NOT NULL
    AND change ->> '$.before.customer_id' IS NOT change ->> '$.fields.customer_id';
