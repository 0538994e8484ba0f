-- Records one status webhook item and applies it to the outbound message it names.
-- The message is found by Graph message id, or, for a send whose response was lost ('unknown'),
-- by the idempotency key echoed in biz_opaque_callback_data, which also completes that send.
-- Returns 'applied', 'stale' (older than what the message shows), 'duplicate' (this status of
-- this message was already received) or 'pending' (no such message yet: kept, applied when the
-- send is recorded). A 'failed' that applies also leaves a notification for the operator.
CREATE OR REPLACE FUNCTION waypost_apply_message_status_v1(
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
#variable_conflict use_column
DECLARE
    v_status_id bigint;
    v_message_id bigint;
    v_conversation_id bigint;
    v_error jsonb;
BEGIN
    INSERT INTO message_statuses AS s (wa_message_id, status, status_at, recipient_id,
                                       biz_opaque_callback_data, errors, payload)
    VALUES (p_wa_message_id, p_status, p_status_at, p_recipient_id, p_callback_data, p_errors, p_payload)
    ON CONFLICT (wa_message_id, status) DO NOTHING
    RETURNING s.id INTO v_status_id;
    IF v_status_id IS NULL THEN
        RETURN 'duplicate';
    END IF;

    SELECT m.id, m.conversation_id INTO v_message_id, v_conversation_id
      FROM messages m WHERE m.wa_message_id = p_wa_message_id AND m.direction = 'outbound';
    IF NOT FOUND AND p_callback_data IS NOT NULL THEN
        UPDATE messages m SET wa_message_id = p_wa_message_id, updated_at = now()
         WHERE m.idempotency_key = p_callback_data AND m.direction = 'outbound'
           AND m.wa_message_id IS NULL
        RETURNING m.id, m.conversation_id INTO v_message_id, v_conversation_id;
    END IF;
    IF v_message_id IS NULL THEN
        RETURN 'pending';
    END IF;

    UPDATE message_statuses SET message_id = v_message_id WHERE id = v_status_id;
    IF NOT waypost_advance_message_status_v1(v_message_id, p_status, p_status_at, p_errors) THEN
        RETURN 'stale';
    END IF;

    IF p_status = 'failed' THEN
        v_error := p_errors -> 0;
        INSERT INTO notifications (conversation_id, message_id, kind, body)
        VALUES (v_conversation_id, v_message_id, 'send_failed',
                'WhatsApp could not deliver a reply'
                || COALESCE(': error ' || (v_error ->> 'code'), '')
                || COALESCE(' ' || COALESCE(v_error ->> 'title', v_error ->> 'message'), '')
                || COALESCE(' (' || (v_error -> 'error_data' ->> 'details') || ')', ''));
    END IF;
    RETURN 'applied';
END;
$$;
