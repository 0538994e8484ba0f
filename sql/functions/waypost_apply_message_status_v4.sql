-- v3's outcomes in fewer statements (issue 17; three status webhooks come back for every reply): the
-- message is looked up inside the status row's insert, so the row is written once with its
-- message_id; the message is updated once (waypost_advance_message_status_v2: status, timestamps,
-- pricing, sending_since); and the AI's job is closed only when it is still open, which it rarely is
-- (waypost_record_send_v1 closes it at the send). Same arguments and results as v3.
CREATE OR REPLACE FUNCTION waypost_apply_message_status_v4(
    p_wa_message_id text,
    p_status text,
    p_status_at timestamptz,
    p_recipient_id text,
    p_callback_data text,
    p_errors jsonb,
    p_payload jsonb
) RETURNS text
    LANGUAGE plpgsql
AS $$
DECLARE
    v_status_id bigint;
    v_message_id bigint;
    v_moved record;
BEGIN
    INSERT INTO message_statuses AS s (wa_message_id, status, status_at, recipient_id,
                                       biz_opaque_callback_data, errors, payload, message_id)
    VALUES (p_wa_message_id, p_status, p_status_at, p_recipient_id, p_callback_data, p_errors, p_payload,
            (SELECT m.id FROM messages m WHERE m.wa_message_id = p_wa_message_id AND m.direction = 'outbound'))
    ON CONFLICT (wa_message_id, status) DO NOTHING
    RETURNING s.id, s.message_id INTO v_status_id, v_message_id;
    IF v_status_id IS NULL THEN
        RETURN 'duplicate';
    END IF;

    IF v_message_id IS NULL AND p_callback_data IS NOT NULL THEN
        -- a send whose answer was lost: its callback key names it
        UPDATE messages m SET wa_message_id = p_wa_message_id, updated_at = clock_timestamp()
         WHERE m.idempotency_key = p_callback_data AND m.direction = 'outbound'
           AND m.wa_message_id IS NULL
        RETURNING m.id INTO v_message_id;
        IF v_message_id IS NOT NULL THEN
            UPDATE message_statuses SET message_id = v_message_id WHERE id = v_status_id;
        END IF;
    END IF;
    IF v_message_id IS NULL THEN
        RETURN 'pending';
    END IF;

    SELECT * INTO v_moved FROM waypost_advance_message_status_v2(
        v_message_id, p_status, p_status_at, p_errors,
        CASE WHEN jsonb_typeof(p_payload -> 'pricing') = 'object' THEN p_payload -> 'pricing' END);
    IF NOT COALESCE(v_moved.moved, false) THEN
        RETURN 'stale';
    END IF;
    IF p_status = 'failed' THEN
        PERFORM waypost_notify_send_failed_v1(v_message_id, p_errors);
    ELSIF v_moved.author = 'ai' AND EXISTS (
        SELECT 1 FROM outbound_jobs j
         WHERE j.inbound_message_id = v_moved.reply_to_message_id AND j.status IN ('pending', 'running')
    ) THEN
        PERFORM waypost_finish_reply_job_v1(v_message_id);
    END IF;
    RETURN 'applied';
END;
$$;
