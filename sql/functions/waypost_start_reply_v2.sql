-- v2 (issue 17): v1, and in the same statement the history the AI reads (`history`: the rows of
-- waypost_reply_history_v1 up to the turn's newest live message, newest first, as a JSON array of at
-- most `p_history_limit` rows, or of as many as the turn has live messages), where the run read it in
-- a statement of its own: one round trip and one transaction less per reply. The same on every row.
-- v1's comment:
-- A reply run's start, in one round trip (worker/reply_start.py): claim the outbound job (running, one
-- more attempt; finished jobs are not reopened, as `outbound_job_start`), then read what the run decides
-- from: the conversation, the turn's messages (one row each, oldest first; a job older than turns whose
-- message lost its link: that message), the send already claimed for the turn's key, the newest opt-out
-- or opt-in word among its live messages, the AI's replies in a row (with `p_count_ai_replies`, as
-- `handover_ai_replies_in_a_row`), and whether any of its messages has a file.
-- No row: the job is not open. PL/pgSQL on purpose: the reads run after the update, each with a snapshot
-- of its own, so a message that joined the turn while the update waited for the row is read with it
-- (the turn's last_message_id returned is never newer than the messages read).
CREATE OR REPLACE FUNCTION waypost_start_reply_v2(p_outbound_job_id bigint, p_key_prefix text,
                                                  p_count_ai_replies boolean, p_history_limit integer)
    RETURNS TABLE (id bigint, conversation_id bigint, inbound_message_id bigint, request_id text,
                   attempts integer, created_at timestamptz, last_message_id bigint, rearmed boolean,
                   phone_number_id text, wa_id text, user_id text, contact_name text, ai_enabled boolean,
                   deleted_at timestamptz, last_inbound_at timestamptz,
                   message_id bigint, wa_message_id text, type text, body text, contact_sent_at timestamptz,
                   message_created_at timestamptz, revoked_at timestamptz,
                   send_key text, send_id bigint, send_status text, send_body text, send_type text,
                   consent_kind text, consent_type text, consent_body text,
                   ai_replies bigint, has_media boolean, history jsonb)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_job record;
BEGIN
    UPDATE outbound_jobs j
       SET status = 'running', attempts = j.attempts + 1, started_at = clock_timestamp(),
           waiting_since = NULL, updated_at = clock_timestamp()
     WHERE j.id = p_outbound_job_id AND j.status IN ('pending', 'running')
    RETURNING j.id, j.conversation_id, j.inbound_message_id, j.request_id, j.attempts, j.created_at,
              j.last_message_id, j.due_at > clock_timestamp() AS rearmed
         INTO v_job;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    WITH turn AS (
        SELECT m.id, m.wa_message_id, m.type, m.body, m.contact_sent_at, m.created_at, m.revoked_at
          FROM messages m WHERE m.turn_id = v_job.id
        UNION ALL
        SELECT m.id, m.wa_message_id, m.type, m.body, m.contact_sent_at, m.created_at, m.revoked_at
          FROM messages m
         WHERE m.id = v_job.inbound_message_id
           AND NOT EXISTS (SELECT 1 FROM messages t WHERE t.turn_id = v_job.id)
    ), first AS (
        SELECT left(p_key_prefix || t.wa_message_id, 512) AS key FROM turn t ORDER BY t.id LIMIT 1
    ), sent AS (
        SELECT f.key, s.id, s.status, s.body, s.type
          FROM first f LEFT JOIN messages s ON s.idempotency_key = f.key
    ), consent AS (
        SELECT e.kind, m.type, m.body
          FROM consent_events e JOIN turn m ON m.id = e.message_id
         WHERE e.source = 'keyword' AND m.revoked_at IS NULL
         ORDER BY m.id DESC
         LIMIT 1
    ), replies AS (
        SELECT count(*) AS n FROM messages m
         WHERE p_count_ai_replies
           AND m.conversation_id = v_job.conversation_id AND m.direction = 'outbound' AND m.author = 'ai'
           AND m.status <> 'failed'
           AND m.reply_to_message_id > COALESCE(GREATEST(
                 (SELECT max(o.id) FROM messages o
                   WHERE o.conversation_id = v_job.conversation_id AND o.direction = 'outbound'
                     AND o.author = 'operator'),
                 (SELECT max(n.message_id) FROM notifications n
                   WHERE n.conversation_id = v_job.conversation_id AND n.kind = 'handover')), 0)
    )
    SELECT v_job.id, v_job.conversation_id, v_job.inbound_message_id, v_job.request_id, v_job.attempts,
           v_job.created_at, v_job.last_message_id, v_job.rearmed,
           c.phone_number_id, c.wa_id, c.user_id, c.contact_name, c.ai_enabled, c.deleted_at, c.last_inbound_at,
           t.id, t.wa_message_id, t.type, t.body, t.contact_sent_at, t.created_at, t.revoked_at,
           s.key, s.id, s.status, s.body, s.type,
           k.kind, k.type, k.body,
           CASE WHEN p_count_ai_replies THEN (SELECT r.n FROM replies r) END,
           EXISTS (SELECT 1 FROM media md JOIN turn tm ON tm.id = md.message_id),
           (SELECT jsonb_agg(to_jsonb(h) ORDER BY h.id DESC)
              FROM waypost_reply_history_v1(
                       v_job.conversation_id,
                       (SELECT COALESCE(max(tl.id) FILTER (WHERE tl.revoked_at IS NULL), max(tl.id)) FROM turn tl),
                       GREATEST(p_history_limit,
                                (SELECT count(*) FROM turn tl WHERE tl.revoked_at IS NULL)::integer)) h)
      FROM conversations c
      LEFT JOIN turn t ON true
      LEFT JOIN sent s ON true
      LEFT JOIN consent k ON true
     WHERE c.id = v_job.conversation_id
     ORDER BY t.id;
END;
$$;
