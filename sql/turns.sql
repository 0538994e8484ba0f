-- Turns (README "Turns"): the inbound messages one reply answers. See worker/turns.py.

-- turns_due --
-- Gathering turns whose quiet window is over (for `min_age` seconds), locked for release; the caller
-- queues each reply and releases it (turn_release) in this transaction. SKIP LOCKED: two turn clocks
-- (or a clock and the sweep) release each turn once; one being joined right now is taken next pass.
-- A turn waits while an earlier turn of its conversation still gathers (or is being released, which
-- this snapshot cannot tell apart): procrastinate runs a conversation's jobs in job id order among
-- those committed, so the earlier turn's job must be queued and committed first.
SELECT id, conversation_id, request_id
  FROM outbound_jobs j
 WHERE status = 'gathering' AND due_at <= clock_timestamp() - make_interval(secs => %(min_age)s)
   AND NOT EXISTS (SELECT 1 FROM outbound_jobs earlier
                    WHERE earlier.conversation_id = j.conversation_id AND earlier.id < j.id
                      AND earlier.status = 'gathering')
 ORDER BY due_at
 LIMIT 200
   FOR UPDATE SKIP LOCKED

-- turn_release --
-- The turn's reply is queued: pending, linked to its procrastinate job, in one update of the row
-- (worker.tasks.requeue_reply says why one).
UPDATE outbound_jobs
   SET status = 'pending', procrastinate_job_id = %(procrastinate_job_id)s, updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s

-- turns_next_due --
-- Seconds until the next gathering turn is due (negative: overdue), NULL when none gathers
SELECT extract(epoch FROM min(due_at) - clock_timestamp())::float8 AS seconds
  FROM outbound_jobs WHERE status = 'gathering'

-- turn_regather --
-- A message joined the turn after its run started: gather again (this run did not count as an
-- attempt); the turn clock queues the reply when the quiet window is over, at once if it is. With
-- `unless_due`, only while the window is still open.
WITH gathering AS (
    UPDATE outbound_jobs
       SET status = 'gathering', attempts = greatest(attempts - 1, 0), updated_at = clock_timestamp(),
           due_at = greatest(due_at, clock_timestamp())
     WHERE id = %(outbound_job_id)s AND status = 'running' AND closed_at IS NULL
       AND (NOT %(unless_due)s OR due_at > clock_timestamp())
    RETURNING id
)
SELECT id, pg_notify('waypost_turns', '') FROM gathering

-- turn_close --
-- The reply is decided: the turn takes no more messages. Nothing is returned when one joined since
-- the run read the turn (its reply has not seen it: the run gathers again). A short transaction of
-- its own: a message stored while the row is held starts the next turn (waypost_ingest_inbound_message_v5
-- skips a locked turn rather than wait for it). For a handover or an unreadable file, closed before
-- the answer is chosen; an answer's claim closes the turn itself (reply_close_and_claim).
UPDATE outbound_jobs
   SET closed_at = COALESCE(closed_at, clock_timestamp()), updated_at = clock_timestamp()
 WHERE id = %(outbound_job_id)s AND COALESCE(last_message_id, inbound_message_id) = %(last_message_id)s
RETURNING id

-- reply_close_and_claim --
-- A reply's claim (claim_send) with its turn closed in the same statement, where turn_close and the
-- claim were two transactions: one commit less per reply (issue 17). No row when a message joined since
-- the run read the turn (its newest message is no longer %(last_message_id)s): nothing is claimed, the
-- turn gathers again. A turn already closed (a retry; the handover and unreadable-file answers, which
-- close it before deciding) is claimed without touching its row, so a retry never holds the job's row
-- while the claim waits for its message: a status webhook takes them the other way round (the message,
-- then the job it closes). A first attempt's message does not exist before this claim, so nothing else
-- can hold it. The UPDATE's own condition is checked again on the row as locked: a message that joined
-- while it waited fails it (see turn_close).
WITH turn AS (
    SELECT id, conversation_id, closed_at IS NOT NULL AS closed
      FROM outbound_jobs
     WHERE id = %(outbound_job_id)s AND conversation_id = %(conversation_id)s
       AND COALESCE(last_message_id, inbound_message_id) = %(last_message_id)s
), closing AS (
    UPDATE outbound_jobs j
       SET closed_at = COALESCE(j.closed_at, clock_timestamp()), updated_at = clock_timestamp()
      FROM turn
     WHERE j.id = turn.id AND NOT turn.closed
       AND COALESCE(j.last_message_id, j.inbound_message_id) = %(last_message_id)s
    RETURNING j.id, j.conversation_id
), closed AS (
    SELECT id, conversation_id FROM closing
    UNION ALL
    SELECT id, conversation_id FROM turn WHERE closed
)
-- LATERAL on closed's column: the claim runs once per closed turn, never when there is none
SELECT c.message_id, c.outcome, c.type, c.body, c.payload, c.send_attempts
  FROM closed
 CROSS JOIN LATERAL waypost_claim_send_v2(closed.conversation_id, %(idempotency_key)s, %(author)s, %(type)s,
                                          %(body)s, %(payload)s, %(reply_to_message_id)s,
                                          make_interval(secs => %(stale_after)s),
                                          make_interval(secs => %(grace)s)) AS c

-- reply_start --
-- A reply run's start: its job claimed, and what it decides from, one row per message of the turn
-- and the history the AI reads (see waypost_start_reply_v2; no row: the job is not open), and whether
-- the knowledge base holds a passage (none: the run does not search it)
SELECT id, conversation_id, inbound_message_id, request_id, attempts, created_at, last_message_id, rearmed,
       phone_number_id, wa_id, user_id, contact_name, ai_enabled, deleted_at, last_inbound_at,
       message_id, wa_message_id, type, body, contact_sent_at, message_created_at, revoked_at,
       send_key, send_id, send_status, send_body, send_type, consent_kind, consent_type, consent_body,
       ai_replies, has_media, history, EXISTS (SELECT 1 FROM kb_passages) AS knowledge_base
  FROM waypost_start_reply_v2(%(outbound_job_id)s, %(key_prefix)s, %(count_ai_replies)s, %(history_limit)s)
