-- Till store schema, version 4: contacts held as shared while pulls catch up.

-- A pulled customer whose identity phone or email a local live customer
-- already holds (the server ordered the two apart: a merge still to be
-- pulled, or this device's own newer change) keeps the contact as shared
-- here, so the unique index stays whole. Each row is one such contact, put
-- back as the server holds it once no other live customer holds the key
-- (see `sync::held`). held_at: the last change-log seq when it was held.
CREATE TABLE held_contacts (
    customer_id TEXT NOT NULL,
    field       TEXT NOT NULL,                -- 'phone' or 'email'
    held_at     INTEGER NOT NULL,
    PRIMARY KEY (customer_id, field)
) WITHOUT ROWID;
