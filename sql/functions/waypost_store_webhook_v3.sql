-- v3 (migration 0040, issue 17): v2 with each message stored by waypost_ingest_inbound_message_v5
-- (the conversation found by waypost_resolve_conversation_v2). Same arguments and results as v2,
-- whose comment follows.
-- v2 (migration 0037): v1 with each message stored by waypost_ingest_inbound_message_v4, which also
-- queues its reply (the job row procrastinate_defer_jobs_v1 writes, as v1 did here), and each status
-- applied by waypost_apply_message_status_v4: each row written once. Same arguments and results as v1,
-- whose comment follows.
-- v1 (migration 0034, README "Webhook"): the common webhook, plain inbound messages and statuses,
-- stored in one statement: one round trip and one commit per acknowledgement instead of twelve and
-- two. Each message goes through waypost_ingest_inbound_message_v4 and waypost_apply_message_changes_v2
-- exactly as the general path does; a reply due at once (no quiet window) is queued with
-- procrastinate's own procrastinate_defer_jobs_v1 (the row its Python `defer` writes: task, queue,
-- the conversation's lock, priority 0, no queueing lock) and linked to its outbound job; each status
-- goes through waypost_apply_message_status_v4. The journal row is written last, already processed,
-- in the same transaction: nothing is acknowledged before the body, the messages and the jobs are
-- committed together. The caller sorts p_messages in locking order (webhook/ingest.py _lock_order).
-- job_ids: the procrastinate jobs queued, beside their outbound_job_ids; status_outcomes: each
-- status's outcome, in the order given.
CREATE OR REPLACE FUNCTION waypost_store_webhook_v3(
    p_request_id text,
    p_body bytea,
    p_body_sha256 bytea,
    p_signature text,
    p_messages jsonb,
    p_statuses jsonb,
    p_quiet_window interval,
    p_max_wait interval,
    p_reply_task text,
    p_reply_queue text
) RETURNS TABLE (event_id bigint, new_messages integer, duplicate_messages integer, job_ids bigint[],
                 outbound_job_ids bigint[], status_outcomes text[])
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_message record;
    v_status record;
    v_row record;
    v_i integer;
    v_new integer := 0;
    v_duplicates integer := 0;
    v_job_ids bigint[] := '{}';
    v_outbound_job_ids bigint[] := '{}';
    v_outcomes text[] := '{}';
    v_event_id bigint;
BEGIN
    FOR v_i IN 0 .. coalesce(jsonb_array_length(p_messages), 0) - 1 LOOP
        SELECT * INTO v_message FROM jsonb_to_record(p_messages -> v_i) AS m(
            phone_number_id text, wa_id text, user_id text, parent_user_id text, username text,
            contact_name text, new_wa_id text, new_user_id text, wa_message_id text, type text, body text,
            payload jsonb, contact_sent_at timestamptz, needs_reply boolean);
        SELECT * INTO v_row FROM waypost_ingest_inbound_message_v5(
            v_message.phone_number_id, v_message.wa_id, v_message.user_id, v_message.parent_user_id,
            v_message.username, v_message.contact_name, v_message.new_wa_id, v_message.new_user_id,
            v_message.wa_message_id, v_message.type, v_message.body, v_message.payload,
            v_message.contact_sent_at, v_message.needs_reply, p_request_id, p_quiet_window, p_max_wait,
            p_reply_task, p_reply_queue);
        IF NOT v_row.created THEN
            v_duplicates := v_duplicates + 1;
            CONTINUE;
        END IF;
        v_new := v_new + 1;
        PERFORM waypost_apply_message_changes_v2(v_message.wa_message_id);
        IF v_row.job_id IS NOT NULL THEN
            v_job_ids := v_job_ids || v_row.job_id;
            v_outbound_job_ids := v_outbound_job_ids || v_row.outbound_job_id;
        END IF;
    END LOOP;

    FOR v_i IN 0 .. coalesce(jsonb_array_length(p_statuses), 0) - 1 LOOP
        SELECT * INTO v_status FROM jsonb_to_record(p_statuses -> v_i) AS s(
            wa_message_id text, status text, status_at timestamptz, recipient_id text, callback_data text,
            errors jsonb, payload jsonb);
        v_outcomes := v_outcomes || waypost_apply_message_status_v4(
            v_status.wa_message_id, v_status.status, v_status.status_at, v_status.recipient_id,
            v_status.callback_data, v_status.errors, v_status.payload);
    END LOOP;

    INSERT INTO webhook_events AS e (request_id, body, body_size, body_sha256, signature, processed_at)
    VALUES (p_request_id, p_body, octet_length(p_body), p_body_sha256, p_signature, clock_timestamp())
    RETURNING e.id INTO v_event_id;
    RETURN QUERY SELECT v_event_id, v_new, v_duplicates, v_job_ids, v_outbound_job_ids, v_outcomes;
END;
$$;
