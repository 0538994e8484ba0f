-- What the AI reads of a media message: a voice note's transcript (media.transcript_*), and a reply
-- that waits for its file (outbound_jobs.waiting_since) without holding a worker. Re-runnable.
-- depends: 0014_media_storage

ALTER TABLE media
    -- NULL: no transcription due; pending: a transcribe_media job will write it; done: `transcript`
    -- holds the words (possibly none); failed: given up (transcript_error says why)
    ADD COLUMN IF NOT EXISTS transcript_status text
        CHECK (transcript_status IN ('pending', 'done', 'failed')),
    ADD COLUMN IF NOT EXISTS transcript text,
    ADD COLUMN IF NOT EXISTS transcript_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS transcript_error text,
    ADD COLUMN IF NOT EXISTS transcribed_at timestamptz;

-- A reply run that found its message's file not ready yet (still downloading, or being transcribed)
-- ends without a live procrastinate job; the download or transcription wakes it when the file is
-- ready or given up, in the same transaction. NULL: not waiting.
ALTER TABLE outbound_jobs ADD COLUMN IF NOT EXISTS waiting_since timestamptz;
