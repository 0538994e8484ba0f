ALTER TABLE outbound_jobs DROP COLUMN IF EXISTS waiting_since;
ALTER TABLE media
    DROP COLUMN IF EXISTS transcribed_at,
    DROP COLUMN IF EXISTS transcript_error,
    DROP COLUMN IF EXISTS transcript_attempts,
    DROP COLUMN IF EXISTS transcript,
    DROP COLUMN IF EXISTS transcript_status;
