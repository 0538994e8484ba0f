-- Inbound media: one row per media message (image, audio and voice notes, video, document, sticker),
-- its download's state, and its bytes in chunks (a file is written and read a chunk at a time, so a
-- large document never needs its size in process memory). Re-runnable, like 0002.
-- depends: 0011_hardening

CREATE TABLE IF NOT EXISTS media (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE media
    ADD COLUMN IF NOT EXISTS message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    -- Meta's media id from the webhook: valid for 7 days, each download asks for a fresh URL with it
    ADD COLUMN IF NOT EXISTS wa_media_id text NOT NULL,
    -- the message type: image, audio, video, document or sticker
    ADD COLUMN IF NOT EXISTS kind text NOT NULL,
    -- as the webhook declared it, then as Meta's media endpoint reported it
    ADD COLUMN IF NOT EXISTS mime_type text,
    -- the file's SHA-256 as the webhook gave it (checked against the bytes downloaded)
    ADD COLUMN IF NOT EXISTS sha256 text,
    ADD COLUMN IF NOT EXISTS filename text,
    ADD COLUMN IF NOT EXISTS voice boolean NOT NULL DEFAULT false,
    -- pending: to download; stored: bytes in media_chunks; failed: given up (last_error says why);
    -- purged: the bytes were deleted after WAYPOST_MEDIA_RETENTION_DAYS (the row stays)
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'stored', 'failed', 'purged')),
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_error text,
    ADD COLUMN IF NOT EXISTS byte_size bigint,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS stored_at timestamptz,
    ADD COLUMN IF NOT EXISTS purged_at timestamptz;
CREATE INDEX IF NOT EXISTS media_stored_at_idx ON media (stored_at) WHERE status = 'stored';
CREATE UNIQUE INDEX IF NOT EXISTS media_message_id_key ON media (message_id);

CREATE TABLE IF NOT EXISTS media_chunks (
    media_id bigint NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    seq integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (media_id, seq)
);
