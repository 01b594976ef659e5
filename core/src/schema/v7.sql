-- Till store schema, version 7: bootstrap, and the newest local change found by index.

-- A bootstrap applies a server snapshot a page at a time, each page in its
-- own transaction. bootstrap_seq: the snapshot's server sequence while one
-- is being applied (NULL otherwise); bootstrap_next: where its next page
-- starts. The cursor moves to bootstrap_seq only in the transaction that
-- applies the last page, so a store half way through never claims to be
-- caught up, and a bootstrap cut short resumes from bootstrap_next.
-- bootstrapped_at: when the last bootstrap completed (NULL: never).
ALTER TABLE sync_state ADD COLUMN bootstrap_seq INTEGER;
ALTER TABLE sync_state ADD COLUMN bootstrap_next TEXT;
ALTER TABLE sync_state ADD COLUMN bootstrapped_at INTEGER;

-- Every write transaction reads the newest local stamp (see Store::write).
-- Without an index it walked back over every pulled change since the
-- device's last own change: a till that had pulled 20,000 changes spent
-- about 7% of applying a page on it, and every sale paid the same walk
-- (`cargo bench -p till-sync-server --bench sync -- --quick`, perf). One
-- entry per local change, always appended at the end.
CREATE INDEX changes_local ON changes(seq) WHERE origin = 'local';
