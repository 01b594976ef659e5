-- Till store schema, version 4: where each acknowledged change sits in the
-- server's log.

-- server_seq: the server sequence of a local change the server accepted,
-- recorded with `pushed_at`; NULL for pulled changes, rejected ones and those
-- acknowledged before version 4. Until a pull reaches it, the change's own
-- log entry is still to come, so older entries must not overwrite the
-- fields it wrote (see sync::incoming).
ALTER TABLE changes ADD COLUMN server_seq INTEGER;

-- Applying a pulled field now asks about acknowledged local changes too,
-- through `changes_by_entity`; this narrower index has no reader left.
DROP INDEX changes_outbox_by_entity;

-- Live customers whose phone or email a pull kept as shared because a
-- local customer held it (see sync::incoming); when that holder lets go of
-- it, these are where the contact goes back (see customers::settle_contacts).
CREATE INDEX customers_shared_phone ON customers(phone_e164) WHERE phone_shared = 1;
CREATE INDEX customers_shared_email ON customers(email) WHERE email_shared = 1;
