-- What the AI reads of media messages: voice-note transcripts, photos for a model that can see,
-- and the reply runs that wait for a file (outbound_jobs.waiting_since). See worker/media_ready.py.

-- reply_media_lock --
-- The files of the messages a reply answers (its turn's), locked: a download or transcription
-- finishing at this moment waits until the reply has decided to wait (and is then woken), or has
-- seen it finished
SELECT md.id, md.kind, md.status, md.transcript_status
  FROM media md JOIN messages m ON m.id = md.message_id
 WHERE m.turn_id = %(outbound_job_id)s
 ORDER BY md.id
   FOR UPDATE OF md

-- outbound_job_wait --
-- The reply's file is not ready: the job waits without a procrastinate job (this run did not count
-- as an attempt); the media task wakes it (media_wake_replies) when the file is ready or given up
UPDATE outbound_jobs
   SET status = 'pending', attempts = greatest(attempts - 1, 0),
       waiting_since = COALESCE(waiting_since, clock_timestamp()),
       last_error = 'waiting for the file (download or transcription)', updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s AND status = 'running'

-- media_wake_replies --
-- The file is ready (stored, transcribed) or given up: the replies waiting for it (their turns'), locked;
-- the caller queues each in this same transaction and marks it woken (media_reply_woken)
SELECT j.id, j.conversation_id, j.request_id
  FROM outbound_jobs j
  JOIN messages m ON m.turn_id = j.id
  JOIN media md ON md.message_id = m.id
 WHERE md.id = %(media_id)s AND j.waiting_since IS NOT NULL AND j.status IN ('pending', 'running')
   FOR UPDATE OF j

-- media_reply_woken --
-- A reply that waited for its file is queued again: one update of its row in the transaction
-- (worker.tasks.requeue_reply says why one)
UPDATE outbound_jobs
   SET waiting_since = NULL, last_error = NULL, procrastinate_job_id = %(procrastinate_job_id)s,
       updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s

-- media_transcription_due --
-- A stored voice note will be transcribed (in the download's transaction)
UPDATE media SET transcript_status = 'pending', transcript_error = NULL
 WHERE id = %(media_id)s AND status = 'stored' AND transcript_status IS NULL
RETURNING id

-- transcription_start --
-- Take a pending transcription for an attempt (one more attempt); none when it is done or given up
UPDATE media md
   SET transcript_attempts = md.transcript_attempts + 1
  FROM messages msg
 WHERE md.id = %(media_id)s AND md.transcript_status = 'pending' AND msg.id = md.message_id
RETURNING md.id, md.message_id, msg.conversation_id, md.kind, md.status, md.mime_type, md.byte_size,
          md.transcript_attempts, md.storage, md.object_bucket, md.object_key

-- transcription_done --
-- The transcript (in the transaction that wakes the reply waiting for it)
UPDATE media
   SET transcript_status = 'done', transcript = %(transcript)s, transcribed_at = now(), transcript_error = NULL
 WHERE id = %(media_id)s AND transcript_status = 'pending'
RETURNING id

-- transcription_note --
-- Why the last transcription attempt failed (another attempt follows)
UPDATE media SET transcript_error = %(error)s WHERE id = %(media_id)s

-- transcription_give_up --
-- The transcription is given up: the AI answers the voice note as unreadable, an operator listens
UPDATE media SET transcript_status = 'failed', transcript_error = %(error)s
 WHERE id = %(media_id)s AND transcript_status = 'pending'
RETURNING id

-- sweep_stuck_media --
-- Downloads and transcriptions still to do whose procrastinate job is gone (it failed on an error
-- nobody classified, or was deleted): the sweep queues them again, or gives them up once out of
-- attempts, so that no reply waits for them forever. SKIP LOCKED: concurrent sweeps split the work.
SELECT md.id, md.message_id, md.kind, md.status, md.attempts, md.transcript_status, md.transcript_attempts,
       msg.conversation_id
  FROM media md JOIN messages msg ON msg.id = md.message_id
 WHERE (md.status = 'pending' OR md.transcript_status = 'pending')
   AND md.created_at < clock_timestamp() - make_interval(secs => %(min_age)s)
   AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs q
         WHERE q.task_name IN ('download_media', 'transcribe_media') AND q.status IN ('todo', 'doing')
           AND q.args ->> 'media_id' = md.id::text)
 ORDER BY md.id
 LIMIT 200
   FOR UPDATE OF md SKIP LOCKED

-- reaction_lock_contact --
-- Lock the reacting contact's live conversation until the webhook's transaction ends: the same row
-- lock the ingest function takes next, so two reactions decide one after the other, never out of order
SELECT c.id FROM conversations c
 WHERE c.phone_number_id = %(phone_number_id)s AND c.deleted_at IS NULL
   AND (c.wa_id = %(wa_id)s OR c.user_id = %(user_id)s)
   FOR UPDATE

-- reaction_answers_ai_question --
-- Whether a reaction reacts to a message of the AI that asked something, in the reacting contact's
-- conversation: then it counts as the answer, and gets a reply. Only the first: a changed reaction
-- (👍, then ❤) to a question already answered by one is shown, not answered again.
SELECT EXISTS (
    SELECT 1 FROM messages m JOIN conversations c ON c.id = m.conversation_id
     WHERE m.wa_message_id = %(target)s AND m.author = 'ai' AND m.body ~ '[?？؟]'
       AND c.phone_number_id = %(phone_number_id)s
       AND (c.wa_id = %(wa_id)s OR c.user_id = %(user_id)s)
       AND NOT EXISTS (
           SELECT 1 FROM messages r JOIN outbound_jobs j ON j.inbound_message_id = r.id
            WHERE r.conversation_id = c.id AND r.type = 'reaction'
              AND r.payload #>> '{reaction,message_id}' = %(target)s)
) AS answers

-- reply_reaction_target --
-- The message a reaction reacts to (a reply to the reaction quotes that one)
SELECT payload #>> '{reaction,message_id}' AS target FROM messages WHERE id = %(message_id)s
