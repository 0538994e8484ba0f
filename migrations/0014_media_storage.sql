-- Where a stored file's bytes are: in PostgreSQL (media_chunks, as before) or in an S3-compatible
-- object store (WAYPOST_MEDIA_STORE_URL). Each row says where its own bytes went, so files stored
-- before the setting changed are still read (and purged) from where they are. Re-runnable.
-- depends: 0013_outbound_kinds

ALTER TABLE media
    -- postgres: the bytes are in media_chunks; s3: one object, object_bucket / object_key
    ADD COLUMN IF NOT EXISTS storage text NOT NULL DEFAULT 'postgres' CHECK (storage IN ('postgres', 's3')),
    ADD COLUMN IF NOT EXISTS object_bucket text,
    ADD COLUMN IF NOT EXISTS object_key text;
