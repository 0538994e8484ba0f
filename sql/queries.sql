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

-- outbound_job_start --
-- Claim an outbound job for a run: running, one more attempt. Finished jobs are not reopened.
UPDATE outbound_jobs
   SET status = 'running', attempts = attempts + 1, started_at = clock_timestamp(),
       updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s AND status IN ('pending', 'running')
RETURNING id, conversation_id, inbound_message_id, request_id, attempts

-- outbound_job_finish --
-- Close an outbound job as done, failed or skipped
UPDATE outbound_jobs
   SET status = %(status)s, last_error = %(last_error)s, skip_reason = %(skip_reason)s,
       finished_at = clock_timestamp(), updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s AND status = 'running'

-- outbound_job_set_procrastinate_id --
-- Link an outbound job to the procrastinate job deferred for it
UPDATE outbound_jobs SET procrastinate_job_id = %(procrastinate_job_id)s, updated_at = now()
 WHERE id = %(outbound_job_id)s

-- webhook_event_insert --
-- Journal one webhook POST, before anything else is done with it
INSERT INTO webhook_events (request_id, body, signature, error)
VALUES (%(request_id)s, %(body)s, %(signature)s, %(error)s)
RETURNING id

-- webhook_event_processed --
-- Mark a journaled webhook as fully processed (same transaction as its effects)
UPDATE webhook_events SET processed_at = clock_timestamp(), error = NULL WHERE id = %(id)s

-- webhook_event_error --
-- Record why a journaled webhook could not be processed
UPDATE webhook_events SET error = %(error)s WHERE id = %(id)s

-- ingest_inbound_message --
-- Insert-or-ignore one inbound message (see waypost_ingest_inbound_message_v1)
SELECT message_id, conversation_id, created, outbound_job_id
  FROM waypost_ingest_inbound_message_v1(
      %(phone_number_id)s, %(wa_id)s, %(contact_name)s, %(wa_message_id)s, %(type)s, %(body)s,
      %(payload)s, %(contact_sent_at)s, %(needs_reply)s, %(request_id)s)

-- apply_message_status --
-- Record and apply one status webhook item (see waypost_apply_message_status_v1)
SELECT waypost_apply_message_status_v1(
    %(wa_message_id)s, %(status)s, %(status_at)s, %(recipient_id)s, %(callback_data)s,
    %(errors)s, %(payload)s) AS outcome

-- notification_insert --
-- Tell the operators about something that needs a person
INSERT INTO notifications (conversation_id, message_id, kind, body)
VALUES (%(conversation_id)s, %(message_id)s, %(kind)s, %(body)s)
