-- Named queries, loaded by name with waypost.sql.query("name").

-- schema_applied_migrations --
-- Migration ids yoyo has recorded as applied (its table exists once any migration ran)
SELECT migration_id FROM _yoyo_migration

-- schema_yoyo_table_exists --
-- Whether yoyo's bookkeeping table exists in this database
SELECT to_regclass('_yoyo_migration') IS NOT NULL AS present

-- schema_columns --
-- Every table.column of the current schema
SELECT table_name, column_name
  FROM information_schema.columns
 WHERE table_schema = current_schema()

-- schema_functions --
-- Names of the functions defined in the current schema
SELECT p.proname AS name
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = current_schema()

-- schema_indexes --
-- Names of the indexes (unique constraints included) of the current schema
SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()

-- schema_triggers --
-- Names of the enabled triggers on tables of the current schema
SELECT t.tgname AS name
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = current_schema() AND NOT t.tgisinternal AND t.tgenabled <> 'D'

-- outbound_job_start --
-- Claim an outbound job for a run: running, one more attempt. Finished jobs are not reopened.
UPDATE outbound_jobs
   SET status = 'running', attempts = attempts + 1, started_at = clock_timestamp(),
       waiting_since = NULL, updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s AND status IN ('pending', 'running')
RETURNING id, conversation_id, inbound_message_id, request_id, attempts, created_at, last_message_id,
          due_at > clock_timestamp() AS rearmed

-- outbound_job_finish --
-- Close an outbound job as done, failed or skipped
UPDATE outbound_jobs
   SET status = %(status)s, last_error = %(last_error)s, skip_reason = %(skip_reason)s,
       finished_at = clock_timestamp(), updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s AND status IN ('pending', 'running')

-- outbound_job_note --
-- Record why a still-open outbound job is not finished yet
UPDATE outbound_jobs SET last_error = %(last_error)s, updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s AND status IN ('pending', 'running')

-- outbound_job_set_procrastinate_id --
-- Link an outbound job to the procrastinate job deferred for it
UPDATE outbound_jobs SET procrastinate_job_id = %(procrastinate_job_id)s, updated_at = now()
 WHERE id = %(outbound_job_id)s

-- webhook_event_insert --
-- Journal one webhook POST, before anything else is done with it
INSERT INTO webhook_events (request_id, body, body_size, body_sha256, signature, error)
VALUES (%(request_id)s, %(body)s, %(body_size)s, %(body_sha256)s, %(signature)s, %(error)s)
RETURNING id

-- webhook_event_processed --
-- Mark a journaled webhook as fully processed (same transaction as its effects); the error names
-- the items that were refused, if any. The row was written by this request moments ago: naming a
-- recent received_at lets PostgreSQL look in today's partition alone, not every day's
UPDATE webhook_events SET processed_at = clock_timestamp(), error = %(error)s
 WHERE id = %(id)s AND received_at > now() - interval '1 hour'

-- webhook_event_error --
-- Record why a journaled webhook could not be processed (written by this request moments ago: see
-- webhook_event_processed)
UPDATE webhook_events SET error = %(error)s WHERE id = %(id)s AND received_at > now() - interval '1 hour'

-- warm_up_begin --
-- waypost/warmup.py, first in its transaction (both undone at its rollback): it never waits long on a
-- lock (another warm-up's rows, a migration), and psql shows it as the warm-up it is
SELECT set_config('lock_timeout', %(lock_timeout)s, true), set_config('application_name', 'waypost-warm-up', true)

-- warm_up_register_worker --
-- worker/warmup.py: a made-up worker, for its made-up job to be taken and ended under (rolled back)
SELECT worker_id FROM procrastinate_register_worker_v1()

-- warm_up_check_constraints --
-- waypost/warmup.py: the deferred constraints' checks, before the warm-up's rollback
SET CONSTRAINTS ALL IMMEDIATE

-- ingest_inbound_message --
-- Insert-or-ignore one inbound message, in its turn (see waypost_ingest_inbound_message_v5). With
-- reply_task and reply_queue NULL (the general path, webhook/ingest.py) the caller defers the reply job
-- when `defer` says so; given them (worker/warmup.py), the statement queues it itself, as the common
-- webhook does, and returns its job_id
SELECT message_id, conversation_id, created, outbound_job_id, defer, job_id
  FROM waypost_ingest_inbound_message_v5(
      %(phone_number_id)s, %(wa_id)s, %(user_id)s, %(parent_user_id)s, %(username)s, %(contact_name)s,
      %(new_wa_id)s, %(new_user_id)s, %(wa_message_id)s, %(type)s, %(body)s, %(payload)s,
      %(contact_sent_at)s, %(needs_reply)s, %(request_id)s,
      make_interval(secs => %(quiet_seconds)s), make_interval(secs => %(max_wait_seconds)s),
      %(reply_task)s, %(reply_queue)s)

-- apply_message_status --
-- Record and apply one status webhook item, its pricing included (see waypost_apply_message_status_v4)
SELECT waypost_apply_message_status_v4(
    %(wa_message_id)s, %(status)s, %(status_at)s, %(recipient_id)s, %(callback_data)s,
    %(errors)s, %(payload)s) AS outcome

-- notification_insert --
-- Tell the operators about something that needs a person
INSERT INTO notifications (conversation_id, message_id, kind, body)
VALUES (%(conversation_id)s, %(message_id)s, %(kind)s, %(body)s)

-- notification_insert_once --
-- The same, unless an unread notification says exactly this already (Meta redelivering a webhook)
INSERT INTO notifications (kind, body)
SELECT %(kind)s, %(body)s
 WHERE NOT EXISTS (SELECT 1 FROM notifications WHERE kind = %(kind)s AND body = %(body)s AND read_at IS NULL)

-- reply_load_conversation --
-- The conversation a reply job answers in
SELECT id, phone_number_id, wa_id, user_id, contact_name, ai_enabled, deleted_at, last_inbound_at
  FROM conversations WHERE id = %(conversation_id)s

-- reply_load_message --
-- The inbound message a reply job answers
SELECT id, wa_message_id, type, body, contact_sent_at, created_at, revoked_at FROM messages WHERE id = %(message_id)s

-- reply_tap_id --
-- The id of the choice an inbound tap carries: a reply button, a list row, a template quick reply
SELECT coalesce(payload #>> '{interactive,button_reply,id}', payload #>> '{interactive,list_reply,id}',
                payload #>> '{button,payload}') AS tap_id
  FROM messages WHERE id = %(message_id)s

-- reply_history --
-- What the AI reads of a conversation, up to and including the message answered, newest first (see
-- waypost_reply_history_v1; a reply run reads it with its start, and again only for a turn with a file)
SELECT id, author, type, body, media_id, media_status, mime_type, filename, transcript,
       byte_size, storage, object_bucket, object_key, quoted_author, quoted_type, quoted_text
  FROM waypost_reply_history_v1(%(conversation_id)s, %(message_id)s, %(limit)s)

-- reply_find_send --
-- The outbound message of an idempotency key, if a send was ever claimed for it (a 'template' one is
-- a re-engagement, worker/reengage.py)
SELECT id, status, body, type FROM messages WHERE idempotency_key = %(idempotency_key)s

-- claim_send --
-- Claim the send of an idempotency key (see waypost_claim_send_v2)
SELECT message_id, outcome, type, body, payload, send_attempts
  FROM waypost_claim_send_v2(%(conversation_id)s, %(idempotency_key)s, %(author)s, %(type)s, %(body)s,
                             %(payload)s, %(reply_to_message_id)s, make_interval(secs => %(stale_after)s),
                             make_interval(secs => %(grace)s))

-- record_send --
-- Record an accepted send and close its job (see waypost_record_send_v2), in one statement, with:
-- - %(read_message_id)s: that message and the conversation's earlier inbound ones marked read (worker/
--   receipts.py: the plain read call of an immediate answer goes right after, and a refused call
--   releases the mark, read_receipt_release, by this time). Same rows as read_receipt_mark.
-- - %(procrastinate_job_id)s: the procrastinate job running the send ended as succeeded, as
--   procrastinate's finish_job would, while it is 'doing' under this worker, %(worker_id)s (not one
--   the sweep took back and another worker runs now: worker/job_end.py). job_ended: it was (the worker
--   then skips its own finish). `ended` runs because job_ended reads it: a CTE nobody reads is not
--   run. FOR UPDATE, not FOR NO KEY UPDATE: the finish may delete the row (%(delete_job)s).
WITH read AS (
    UPDATE messages SET read_receipt_at = %(sent_at)s
     WHERE conversation_id = %(read_conversation_id)s AND direction = 'inbound' AND id <= %(read_message_id)s
       AND read_receipt_at IS NULL
), job AS (
    SELECT q.id FROM procrastinate_jobs q
     WHERE q.id = %(procrastinate_job_id)s AND q.status = 'doing' AND q.worker_id = %(worker_id)s
       FOR UPDATE
), ended AS MATERIALIZED (
    SELECT procrastinate_finish_job_v1(job.id, 'succeeded', %(delete_job)s) FROM job
)
SELECT waypost_record_send_v2(%(message_id)s, %(wa_message_id)s, %(sent_at)s) AS recorded,
       (SELECT count(*) FROM ended) > 0 AS job_ended

-- fail_send --
-- Record a send that cannot succeed (see waypost_fail_send_v1)
SELECT waypost_fail_send_v1(%(message_id)s, %(errors)s, %(reason)s)

-- reply_fail_claimed_send --
-- Fail the AI reply an outbound job claimed, if it claimed one that never reached Meta ('unknown'
-- ones may have: a status webhook still settles them)
SELECT waypost_fail_send_v1(m.id, %(errors)s, %(reason)s)
  FROM outbound_jobs j
  JOIN messages m ON m.reply_to_message_id = j.inbound_message_id AND m.author = 'ai'
 WHERE j.id = %(outbound_job_id)s AND m.status = 'sending'

-- release_send --
-- A definite failure ended the attempt: the message stays 'sending', free for the next attempt
UPDATE messages SET sending_since = NULL, error = %(errors)s, updated_at = clock_timestamp()
 WHERE id = %(message_id)s AND status = 'sending'

-- mark_send_unknown --
-- The attempt may have been accepted: wait for a status webhook (or the grace period)
UPDATE messages SET status = 'unknown', updated_at = clock_timestamp()
 WHERE id = %(message_id)s AND status = 'sending'

-- sweep_orphan_outbound_jobs --
-- Open outbound jobs with no live procrastinate job, except those whose send is in flight or
-- awaiting a status webhook within the grace period. SKIP LOCKED: concurrent sweeps split the work.
SELECT j.id, j.conversation_id, j.request_id, j.attempts
  FROM outbound_jobs j
  LEFT JOIN procrastinate_jobs q ON q.id = j.procrastinate_job_id
  LEFT JOIN messages m ON m.reply_to_message_id = j.inbound_message_id AND m.author = 'ai'
 WHERE j.status IN ('pending', 'running')
   AND (q.id IS NULL OR q.status NOT IN ('todo', 'doing'))
   AND j.updated_at < clock_timestamp() - make_interval(secs => %(min_age)s)
   AND NOT (m.status IN ('sending', 'unknown') AND m.sending_since IS NOT NULL
            AND m.sending_since >= clock_timestamp() - make_interval(secs => %(stale_after)s + %(grace)s))
   -- a reply waiting for its file is woken by the download or transcription (sweep_stuck_media
   -- keeps those going)
   AND NOT (j.waiting_since IS NOT NULL AND EXISTS (
            SELECT 1 FROM media md JOIN messages tm ON tm.id = md.message_id
             WHERE tm.turn_id = j.id AND (md.status = 'pending' OR md.transcript_status = 'pending')))
 ORDER BY j.id
 LIMIT 500
   FOR UPDATE OF j SKIP LOCKED

-- outbound_job_give_up --
-- An outbound job out of attempts: failed, and the operator told
WITH failed AS (
    UPDATE outbound_jobs
       SET status = 'failed', last_error = %(reason)s, finished_at = clock_timestamp(),
           updated_at = clock_timestamp()
     WHERE id = %(outbound_job_id)s AND status IN ('pending', 'running')
    RETURNING conversation_id
)
INSERT INTO notifications (conversation_id, kind, body)
SELECT conversation_id, 'reply_failed', %(reason)s FROM failed

-- sweep_journal_partitions --
-- The journal's retention: days past it dropped whole, the next days' partitions made ahead, stray old
-- rows (default and legacy partitions) deleted (waypost_journal_partitions_v1)
SELECT partitions_created, partitions_dropped, rows_deleted
  FROM waypost_journal_partitions_v1(make_interval(secs => %(seconds)s), %(days_ahead)s)

-- operator_message_load --
-- An operator message the worker is asked to send
SELECT id, conversation_id, idempotency_key, type, body, payload, reply_to_message_id, status, send_attempts,
       created_at
  FROM messages WHERE id = %(message_id)s AND author = 'operator'

-- sweep_orphan_operator_messages --
-- Operator messages still to send with no live procrastinate job, except those in flight or
-- awaiting a status webhook within the grace period. SKIP LOCKED: concurrent sweeps split the work.
SELECT m.id, m.conversation_id, m.send_attempts
  FROM messages m
 WHERE m.author = 'operator' AND m.status IN ('sending', 'unknown')
   AND m.updated_at < clock_timestamp() - make_interval(secs => %(min_age)s)
   AND (m.sending_since IS NULL
        OR m.sending_since < clock_timestamp() - make_interval(secs => %(stale_after)s + %(grace)s))
   AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs q
         WHERE q.task_name = 'send_operator_message' AND q.status IN ('todo', 'doing')
           AND q.args ->> 'message_id' = m.id::text)
 ORDER BY m.id
 LIMIT 500
   FOR UPDATE OF m SKIP LOCKED

-- sweep_old_media --
-- Files stored longer ago than WAYPOST_MEDIA_RETENTION_DAYS, a batch per run, locked while their
-- objects are deleted from the S3 store (if that is where they are), then purged
SELECT id, storage, object_bucket, object_key
  FROM media
 WHERE status = 'stored' AND stored_at < now() - make_interval(secs => %(seconds)s)
 ORDER BY stored_at
 LIMIT 200
   FOR UPDATE SKIP LOCKED

-- sweep_purge_media --
-- These files' bytes are gone: the chunks go, the row stays (purged)
WITH old AS (
    UPDATE media SET status = 'purged', purged_at = now()
     WHERE id = ANY(%(media_ids)s) AND status = 'stored'
    RETURNING id
), gone AS (
    DELETE FROM media_chunks c USING old WHERE c.media_id = old.id
)
SELECT count(*) AS purged FROM old

-- sweep_delete_old_sign_in_attempts --
-- Sign-in attempts older than the longest rate-limit window anyone configures
DELETE FROM sign_in_attempts WHERE attempted_at < clock_timestamp() - interval '1 day'

-- sweep_delete_old_operator_sessions --
-- Inbox sessions ended, or idle, for longer than the retention period
DELETE FROM operator_sessions
 WHERE COALESCE(ended_at, last_seen_at) < clock_timestamp() - make_interval(secs => %(seconds)s)

-- metrics_queue --
-- Jobs waiting in procrastinate by queue, and the age of the oldest one already due. Waypost's own
-- queues (worker/queue.py) always have a row, 0 when empty, so that the gauge has a sample.
SELECT q.queue_name, count(due.queue_name) AS waiting,
       COALESCE(EXTRACT(EPOCH FROM now() - min(due.scheduled_at_or_created)), 0) AS oldest_seconds
  FROM (SELECT 'replies' AS queue_name UNION SELECT 'maintenance'
        UNION SELECT DISTINCT queue_name FROM procrastinate_jobs WHERE status = 'todo') q
  LEFT JOIN (SELECT j.queue_name, COALESCE(j.scheduled_at, e.at) AS scheduled_at_or_created
               FROM procrastinate_jobs j
               LEFT JOIN LATERAL (SELECT min(at) AS at FROM procrastinate_events
                                   WHERE job_id = j.id AND type = 'deferred') e ON true
              WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())) due
         ON due.queue_name = q.queue_name
 GROUP BY q.queue_name

-- metrics_outbound_jobs --
-- Open reply jobs by status, with the age of the oldest
SELECT status, count(*) AS jobs, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest_seconds
  FROM outbound_jobs WHERE status IN ('gathering', 'pending', 'running') GROUP BY status

-- metrics_workers --
-- Registered workers and the age of their last heartbeat
SELECT id, EXTRACT(EPOCH FROM now() - last_heartbeat) AS heartbeat_age_seconds FROM procrastinate_workers

-- metrics_unknown_sends --
-- Outbound messages whose send outcome is being reconciled
SELECT count(*) AS sends FROM messages WHERE status = 'unknown'

-- status_reply_jobs --
-- Reply jobs by status, with how many and the age of the oldest (all statuses)
SELECT status, count(*) AS jobs, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest_seconds
  FROM outbound_jobs GROUP BY status ORDER BY status

-- status_unknown_sends --
-- Sends whose outcome is being reconciled, and how long the oldest has waited
SELECT count(*) AS sends, COALESCE(EXTRACT(EPOCH FROM now() - min(updated_at)), 0) AS oldest_seconds
  FROM messages WHERE status = 'unknown'

-- status_failed_sends --
-- Sends that failed in the last hour, by Graph error code
SELECT COALESCE(error -> 0 ->> 'code', error ->> 'code', 'none') AS code, count(*) AS sends
  FROM messages WHERE status = 'failed' AND failed_at > now() - interval '1 hour'
 GROUP BY 1 ORDER BY 2 DESC

-- status_notifications --
-- Unread notifications awake now, and those snoozed
SELECT count(*) FILTER (WHERE snoozed_until IS NULL OR snoozed_until <= now()) AS unread,
       count(*) FILTER (WHERE snoozed_until > now()) AS snoozed
  FROM notifications WHERE read_at IS NULL

-- listen_channel --
-- Subscribe a LISTEN connection to a channel: {channel} is filled with psycopg.sql.Identifier
LISTEN {channel}

-- listen_ping --
-- Proves a quiet LISTEN connection is still alive
SELECT 1

-- handover_last_messages --
-- The last words of a conversation, newest first, for the operators' handover notification
SELECT direction, body FROM messages
 WHERE conversation_id = %(conversation_id)s AND body IS NOT NULL AND body <> '' AND revoked_at IS NULL
 ORDER BY id DESC LIMIT %(limit)s

-- handover_pause_ai --
-- A handover: the AI stops answering this conversation until an operator hands it back (or the sweep
-- does, WAYPOST_HANDBACK_AFTER_SECONDS); it waits for a person, with the reason, until one takes it
UPDATE conversations SET ai_enabled = false, handed_over_at = now(), handover_reason = %(reason)s,
       owner_operator_id = NULL, owned_at = NULL, updated_at = now()
 WHERE id = %(conversation_id)s

-- handover_ai_replies_in_a_row --
-- The AI's replies (not failed) since a person last wrote for the business or the conversation was last
-- handed over (its notification names the message answered by the handover): WAYPOST_HANDOVER_AFTER_AI_REPLIES
SELECT count(*) FROM messages m
 WHERE m.conversation_id = %(conversation_id)s AND m.direction = 'outbound' AND m.author = 'ai'
   AND m.status <> 'failed'
   AND m.reply_to_message_id > COALESCE(GREATEST(
         (SELECT max(o.id) FROM messages o
           WHERE o.conversation_id = %(conversation_id)s AND o.direction = 'outbound' AND o.author = 'operator'),
         (SELECT max(n.message_id) FROM notifications n
           WHERE n.conversation_id = %(conversation_id)s AND n.kind = 'handover')), 0)

-- store_webhook --
-- Store a webhook of plain inbound messages and statuses, queue its replies and journal it, in one
-- statement (see waypost_store_webhook_v3)
SELECT event_id, new_messages, duplicate_messages, job_ids, outbound_job_ids, status_outcomes
  FROM waypost_store_webhook_v3(
      %(request_id)s, %(body)s, %(body_sha256)s, %(signature)s, %(messages)s, %(statuses)s,
      make_interval(secs => %(quiet_seconds)s), make_interval(secs => %(max_wait_seconds)s),
      %(reply_task)s, %(reply_queue)s)

-- store_webhooks --
-- Several webhooks of the common kind stored in one statement and one commit, each as store_webhook
-- stores one (see waypost_store_webhooks_v1; webhook/group_commit.py). The arrays go in binary (`%(name)b`):
-- psycopg writes a text array of JSON bodies by escaping each quote with a regular expression, about
-- ten times the CPU (0.2 ms a webhook).
SELECT event_number, event_id, new_messages, duplicate_messages, job_ids, outbound_job_ids, status_outcomes
  FROM waypost_store_webhooks_v1(
      %(request_ids)b, %(bodies)b, %(body_sha256s)b, %(signatures)b, %(messages)b::jsonb[], %(statuses)b::jsonb[],
      make_interval(secs => %(quiet_seconds)s), make_interval(secs => %(max_wait_seconds)s),
      %(reply_task)s, %(reply_queue)s)
 ORDER BY event_number

-- fetch_jobs_and_backlog --
-- procrastinate's fetch_job for up to `limit` jobs (its columns and rules, by waypost_fetch_jobs_v1):
-- one row per job taken, or one row of NULLs when none is; and on every row whether other jobs of
-- these queues are due: waiting, or held back by a lock (worker/resilience.py fetches again, or wakes
-- at a job's end, only then). The backlog reads the statement's snapshot, where the jobs just taken
-- are still 'todo': hence their ids. A job deferred after that snapshot sends its own NOTIFY. It is the
-- first due job in the priority index's order (LIMIT 1), not an EXISTS: on statistics taken during a
-- burst an EXISTS may be planned as a scan of the whole table, which finds nothing once it drains.
-- Each reply job taken is also started, in this statement (`reply_start`, worker/reply_start.py), the
-- first `max_starts` of them in the order they are returned.
WITH taken AS MATERIALIZED (
    SELECT t.*,
           count(*) FILTER (WHERE t.task_name = %(reply_task)s::text)
               OVER (ORDER BY t.priority DESC, t.id) AS reply_rank
      FROM waypost_fetch_jobs_v1(%(queues)s::varchar[], %(worker_id)s, %(limit)s) t
), backlog AS (
    SELECT (SELECT true FROM procrastinate_jobs j
             WHERE j.status = 'todo' AND j.id <> ALL (ARRAY(SELECT t.id FROM taken t))
               AND (%(queues)s::varchar[] IS NULL OR j.queue_name = ANY(%(queues)s::varchar[]))
               AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
             ORDER BY j.priority DESC, j.id
             LIMIT 1) IS NOT NULL AS backlog
)
SELECT f.id, f.status, f.task_name, f.priority, f.lock, f.queueing_lock, f.args, f.scheduled_at, f.queue_name,
       f.attempts, f.worker_id, b.backlog,
       -- a reply job is started here, committed with its fetch (worker/reply_start.py): NULL for the
       -- other tasks, for every task when `reply_task` is NULL, and when the outbound job's row is
       -- locked or the start raised (waypost_try_start_reply_v1), and past the first `max_starts` (for
       -- every one when `max_starts` is NULL, as without settings)
       CASE WHEN f.task_name = %(reply_task)s::text AND f.reply_rank <= %(max_starts)s::integer
            THEN waypost_try_start_reply_v1(f.args, %(key_prefix)s::text, %(count_ai_replies)s::boolean,
                                            %(history_limit)s::integer)
       END AS reply_start
  FROM backlog b LEFT JOIN taken f ON true
 ORDER BY f.priority DESC, f.id

