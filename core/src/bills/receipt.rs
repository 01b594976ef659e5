//! Plain-text receipts for 32, 42 and 48 column printers.
