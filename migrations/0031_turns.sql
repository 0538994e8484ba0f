-- One answer per burst (issue 16, README "Turns"): an outbound job is a turn, the inbound messages one
-- reply answers. Messages that arrive within the quiet window (WAYPOST_TURN_QUIET_SECONDS) join the
-- open turn of their conversation until its reply is claimed. Re-runnable.
-- depends: 0030_media_staging

ALTER TABLE outbound_jobs DROP CONSTRAINT IF EXISTS outbound_jobs_status_check;
ALTER TABLE outbound_jobs ADD CONSTRAINT outbound_jobs_status_check CHECK (
    status IN ('gathering', 'pending', 'running', 'done', 'failed', 'skipped'));

ALTER TABLE outbound_jobs
    -- the turn's newest inbound message (inbound_message_id is its first: the reply's key is that one's)
    ADD COLUMN IF NOT EXISTS last_message_id bigint REFERENCES messages (id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS message_count integer NOT NULL DEFAULT 1,
    -- while 'gathering': when the quiet window ends (re-armed by each message, capped by the maximum
    -- wait from created_at); the worker's turn clock queues the reply then
    ADD COLUMN IF NOT EXISTS due_at timestamptz,
    -- the turn takes no more messages: its reply was decided and claimed; later ones start the next turn
    ADD COLUMN IF NOT EXISTS closed_at timestamptz;

ALTER TABLE messages
    -- the turn (outbound job) whose reply answers this inbound message; exactly one per message
    -- that is answered
    ADD COLUMN IF NOT EXISTS turn_id bigint REFERENCES outbound_jobs (id) ON DELETE SET NULL;

UPDATE outbound_jobs SET last_message_id = inbound_message_id WHERE last_message_id IS NULL;
UPDATE outbound_jobs SET closed_at = COALESCE(finished_at, updated_at)
 WHERE closed_at IS NULL AND status IN ('done', 'failed', 'skipped');
UPDATE messages m SET turn_id = j.id FROM outbound_jobs j WHERE j.inbound_message_id = m.id AND m.turn_id IS NULL;

CREATE INDEX IF NOT EXISTS messages_turn_idx ON messages (turn_id) WHERE turn_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbound_jobs_gathering_idx ON outbound_jobs (due_at) WHERE status = 'gathering';
CREATE INDEX IF NOT EXISTS outbound_jobs_open_turn_idx ON outbound_jobs (conversation_id, id)
    WHERE closed_at IS NULL AND status IN ('gathering', 'pending', 'running');

-- Open jobs that should have finished, now with turns still gathering long after they were due.
CREATE OR REPLACE VIEW waypost_stuck_jobs AS
SELECT j.id AS outbound_job_id,
       j.status,
       j.conversation_id,
       j.request_id,
       j.attempts,
       j.last_error,
       date_trunc('second', now() - j.created_at) AS age,
       j.procrastinate_job_id,
       q.status AS procrastinate_status,
       q.attempts AS procrastinate_attempts,
       q.scheduled_at AS procrastinate_scheduled_at,
       m.id AS reply_message_id,
       m.status AS reply_status,
       m.sending_since AS reply_sending_since
  FROM outbound_jobs j
  LEFT JOIN procrastinate_jobs q ON q.id = j.procrastinate_job_id
  LEFT JOIN messages m ON m.reply_to_message_id = j.inbound_message_id AND m.author = 'ai'
 WHERE (j.status IN ('pending', 'running') AND j.created_at < now() - interval '2 minutes')
    OR (j.status = 'gathering' AND j.due_at < now() - interval '2 minutes');
