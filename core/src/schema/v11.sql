-- Till store schema, version 11: the customers a bill was moved off.
--
-- A bill opened for one customer and moved to another (or made a walk-in)
-- before payment keeps the first customer's phone in its change records.
-- Erasing that customer finds the bill here (`portability::erase`). Bills
-- moved before this version are found in the change log.
CREATE TABLE bill_past_customers (
    customer_id TEXT NOT NULL,
    bill_id     TEXT NOT NULL,
    PRIMARY KEY (customer_id, bill_id)
) WITHOUT ROWID;

INSERT OR IGNORE INTO bill_past_customers (customer_id, bill_id)
SELECT before ->> '$.customer_id', entity_id FROM changes
WHERE entity = 'bill' AND before LIKE '%"customer_id":"%'
    AND before ->> '$.customer_id' IS NOT NULL
    AND before ->> '$.customer_id' IS NOT fields ->> '$.customer_id';
