-- Views for operators at the psql prompt (docs/operations.md). Re-runnable: CREATE OR REPLACE.
-- depends: 0007_contact_functions

-- Outbound jobs by status, with how many and how old the oldest is.
CREATE OR REPLACE VIEW waypost_jobs_by_status AS
SELECT status,
       count(*) AS jobs,
       min(created_at) AS oldest_created_at,
       date_trunc('second', now() - min(created_at)) AS oldest_age
  FROM outbound_jobs
 GROUP BY status;

-- Open outbound jobs that should have finished: pending or running for over 2 minutes, with the state
-- of their procrastinate job and of their reply, and why they are not done yet.
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

-- Failed outbound messages with Meta's first error.
CREATE OR REPLACE VIEW waypost_failed_sends AS
SELECT m.id AS message_id,
       m.conversation_id,
       c.phone_number_id,
       COALESCE(c.wa_id, c.user_id) AS contact,
       m.author,
       m.failed_at,
       (e ->> 'code')::bigint AS error_code,
       COALESCE(e ->> 'title', e ->> 'message') AS error_title,
       e -> 'error_data' ->> 'details' AS error_details,
       m.body
  FROM messages m
  JOIN conversations c ON c.id = m.conversation_id
  LEFT JOIN LATERAL (SELECT CASE jsonb_typeof(m.error) WHEN 'array' THEN m.error -> 0 ELSE m.error END AS e) AS err
       ON true
 WHERE m.direction = 'outbound' AND m.status = 'failed';

-- The reply queue behind each conversation: procrastinate jobs waiting or running per lock.
CREATE OR REPLACE VIEW waypost_conversation_queues AS
SELECT substring(q.lock FROM '^conversation:(\d+)$')::bigint AS conversation_id,
       count(*) FILTER (WHERE q.status = 'todo') AS waiting,
       count(*) FILTER (WHERE q.status = 'doing') AS running,
       min(q.id) AS next_job_id,
       min(q.scheduled_at) FILTER (WHERE q.status = 'todo') AS earliest_scheduled_at
  FROM procrastinate_jobs q
 WHERE q.lock LIKE 'conversation:%' AND q.status IN ('todo', 'doing')
 GROUP BY q.lock;
