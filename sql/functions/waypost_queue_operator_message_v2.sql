-- Queues an operator's message of any kind in a live conversation, for the worker to send through
-- the same claim/send/record path as AI replies. v2: the message's WhatsApp type (text, image,
-- document, audio, video, reaction...), its Graph object (`p_payload`; a media message's file is
-- attached to the row by the caller, in the same transaction, and uploaded by the worker) and the
-- message it replies to (`p_reply_to_message_id`, sent as context.message_id). The row is created in
-- 'sending' and not yet claimed (sending_since NULL). Outcomes:
--   queued                a new message row; the caller defers its send in the same transaction
--   duplicate             this idempotency key was queued before (a resubmitted form): nothing new
--   conversation_missing  no such conversation, or it is deleted
--   window_closed         no inbound message within p_window: WhatsApp refuses free-form messages
--   reply_to_missing      the message replied to is not a sent or received message of this conversation
-- With p_pause_ai, the conversation's AI is paused in the same transaction.
CREATE OR REPLACE FUNCTION waypost_queue_operator_message_v2(
    p_conversation_id bigint,
    p_idempotency_key text,
    p_type text,
    p_body text,
    p_payload jsonb,
    p_reply_to_message_id bigint,
    p_operator_id bigint,
    p_pause_ai boolean,
    p_window interval
) RETURNS TABLE (message_id bigint, outcome text)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_conversation conversations%ROWTYPE;
    v_message_id bigint;
BEGIN
    SELECT c.* INTO v_conversation FROM conversations c WHERE c.id = p_conversation_id FOR UPDATE;
    IF v_conversation.id IS NULL OR v_conversation.deleted_at IS NOT NULL THEN
        RETURN QUERY SELECT NULL::bigint, 'conversation_missing'::text;
        RETURN;
    END IF;
    SELECT m.id INTO v_message_id FROM messages m WHERE m.idempotency_key = p_idempotency_key;
    IF v_message_id IS NOT NULL THEN
        RETURN QUERY SELECT v_message_id, 'duplicate'::text;
        RETURN;
    END IF;
    IF v_conversation.last_inbound_at IS NULL OR v_conversation.last_inbound_at < now() - p_window THEN
        RETURN QUERY SELECT NULL::bigint, 'window_closed'::text;
        RETURN;
    END IF;
    IF p_reply_to_message_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM messages q
         WHERE q.id = p_reply_to_message_id AND q.conversation_id = p_conversation_id
           AND q.wa_message_id IS NOT NULL
    ) THEN
        RETURN QUERY SELECT NULL::bigint, 'reply_to_missing'::text;
        RETURN;
    END IF;
    INSERT INTO messages AS m (conversation_id, direction, author, idempotency_key, type, body, payload, status,
                               operator_id, reply_to_message_id, send_attempts, sending_since)
    VALUES (p_conversation_id, 'outbound', 'operator', p_idempotency_key, p_type, p_body, p_payload, 'sending',
            p_operator_id, p_reply_to_message_id, 0, NULL)
    RETURNING m.id INTO v_message_id;
    IF p_pause_ai AND v_conversation.ai_enabled THEN
        UPDATE conversations c SET ai_enabled = false, updated_at = now() WHERE c.id = p_conversation_id;
    END IF;
    RETURN QUERY SELECT v_message_id, 'queued'::text;
END;
$$;
