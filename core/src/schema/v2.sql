-- Till store schema, version 2: search.

-- Digit and number fragments of live customers, keyed by the customer's
-- rowid: the trigram tokenizer finds any run of 3+ characters anywhere in
-- a value, so "43210" finds +919876543210 and "000042" finds S01-T03-C000042.
-- phone: digits of the canonical and the as-typed number, space-separated;
-- number: the customer number, folded.
CREATE VIRTUAL TABLE customers_digits USING fts5(
    phone, number,
    tokenize = 'trigram'
);

-- Bills by the sequence behind their number, so a bill is found by its
-- trailing digits ("42", "000042") on whichever device issued it.
CREATE INDEX bills_by_seq ON bills(seq);
