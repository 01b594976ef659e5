-- Till store schema, version 5: where each acknowledged change sits in the
-- server's log.

-- server_seq: the server sequence of a local change the server accepted,
-- recorded with `pushed_at`; NULL for pulled changes, rejected ones and those
-- acknowledged before version 5. Until a pull reaches it, the change's own
-- log entry is still to come, so older entries must not overwrite the
-- fields it wrote (see sync::incoming).
ALTER TABLE changes ADD COLUMN server_seq INTEGER;

-- Applying a pulled field now asks about acknowledged local changes too,
-- through `changes_by_entity`; this narrower index has no reader left.
DROP INDEX changes_outbox_by_entity;
