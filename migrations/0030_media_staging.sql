-- An operator's file (or the AI's) is written to the media store before its message is queued, as a
-- staged `media` row with no message yet (message_id NULL); the short transaction that queues the
-- message links it. The sweep removes staged rows no message took within an hour. Re-runnable.
-- depends: 0029_read_receipts

ALTER TABLE media ALTER COLUMN message_id DROP NOT NULL;
CREATE INDEX IF NOT EXISTS media_staged_idx ON media (created_at) WHERE message_id IS NULL;
