-- Till store schema, version 7: bootstrap.

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
