-- Till store schema, version 2: search.

-- Digit and number fragments of live customers, keyed by the customer's
-- rowid (see `search::fts::digit_keys`): 'p' + every suffix of 4+ digits of
-- the phone, 'n' + every suffix of 3+ characters of the number's words,
-- 'v' + the number's trailing value. "Contains 43210" is then one range
-- scan of keys starting with 'p43210'; "42" finds S01-T03-C000042 by 'v42'.
CREATE TABLE customers_digits (
    key TEXT NOT NULL,
    rid INTEGER NOT NULL,
    PRIMARY KEY (key, rid)
) WITHOUT ROWID;

-- Bills by the sequence behind their number, so a bill is found by its
-- trailing digits ("42", "000042") on whichever device issued it.
CREATE INDEX bills_by_seq ON bills(seq);
