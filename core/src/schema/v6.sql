-- Till store schema, version 6: where each acknowledged change sits in the
-- server's log.

-- server_seq: the server sequence of a local change the server accepted,
-- recorded with `pushed_at`; NULL for pulled changes, rejected ones and those
-- acknowledged before version 6. Until a pull reaches it, the change's own
-- log entry is still to come, so older entries must not overwrite the
-- fields it wrote (see sync::incoming, which finds a record's changes
-- through `changes_by_entity`).
ALTER TABLE changes ADD COLUMN server_seq INTEGER;
