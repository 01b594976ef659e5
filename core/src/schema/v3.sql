-- Till store schema, version 3: sync.

-- Where this device stands with the server: one row, created here.
-- cursor: the last server sequence applied (advanced in the transaction that
-- applies the page); last_sync_at: the end of the last sync that completed;
-- last_error: what ended the last failed sync (cleared by a successful one).
CREATE TABLE sync_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    cursor        INTEGER NOT NULL DEFAULT 0,
    last_sync_at  INTEGER,
    last_error    TEXT,
    last_error_at INTEGER
);
INSERT INTO sync_state (id) VALUES (1);

-- Local changes the server refused for good. A quarantined change is also
-- acknowledged (its `pushed_at` is set), so it never blocks the outbox and
-- is never pushed again; this table keeps why, for the app to show.
CREATE TABLE quarantine (
    change_id TEXT PRIMARY KEY REFERENCES changes(change_id),
    reason    TEXT NOT NULL,                  -- a RejectReason wire name
    message   TEXT NOT NULL,
    at        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX quarantine_by_at ON quarantine(at, change_id);

-- The still-unacknowledged local changes of one record: applying a pulled
-- field asks whether one of them touches it.
CREATE INDEX changes_outbox_by_entity ON changes(entity_id, seq)
    WHERE pushed_at IS NULL AND origin = 'local';
