-- Till store schema, version 10: a customer's bill history is read from
-- its index alone.
--
-- `bills_by_customer` now carries every column of a history page
-- (`bills::SUMMARY_COLUMNS`) and of the metrics aggregates, so a page of 20
-- bills reads one or two neighbouring index pages instead of 20 bill rows
-- scattered over the file. Replaced by the upgrade step through
-- `sync::deferred::replace_index`, which keeps a bootstrap's deferral.
CREATE INDEX bills_by_customer ON bills(customer_id, opened_at DESC, rid DESC,
    id, number, kind, status, total, refunded_total, currency, closed_at)
    WHERE customer_id IS NOT NULL;
