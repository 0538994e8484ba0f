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
 WHERE j.status IN ('pending', 'running') AND j.created_at < now() - interval '2 minutes';
-- a gathering turn goes on as a pending job (the sweep queues it)
UPDATE outbound_jobs SET status = 'pending' WHERE status = 'gathering';
DROP INDEX IF EXISTS outbound_jobs_open_turn_idx;
DROP INDEX IF EXISTS outbound_jobs_gathering_idx;
DROP INDEX IF EXISTS messages_turn_idx;
ALTER TABLE messages DROP COLUMN IF EXISTS turn_id;
ALTER TABLE outbound_jobs DROP COLUMN IF EXISTS closed_at, DROP COLUMN IF EXISTS due_at,
    DROP COLUMN IF EXISTS message_count, DROP COLUMN IF EXISTS last_message_id;
ALTER TABLE outbound_jobs DROP CONSTRAINT IF EXISTS outbound_jobs_status_check;
ALTER TABLE outbound_jobs ADD CONSTRAINT outbound_jobs_status_check CHECK (
    status IN ('pending', 'running', 'done', 'failed', 'skipped'));
