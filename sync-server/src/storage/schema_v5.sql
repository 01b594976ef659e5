-- Till sync-server schema, version 5: the last stamp clamped per device.

-- A device whose clock runs ahead has its stamps pulled back to the
-- server's time (`till_core::sync::conflict::Clamp`). Two of its batches
-- received within one millisecond land on the same one; the second takes
-- counters past the last stamp the first was given, kept here, so the
-- device's later edit is never taken for a replay of its earlier one.
ALTER TABLE devices ADD COLUMN last_clamp TEXT;
