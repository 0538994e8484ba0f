-- Queues an operator's message of any kind in a live conversation, for the worker to send through
-- the same claim/send/record path as AI replies. v3: as v2, and a message of type 'template' (its Graph
-- object {name, language: {code}, components} in p_payload) may go outside the 24-hour window, which
-- is when templates are needed; the template must be stored and APPROVED, and a MARKETING template is
-- refused to a contact for whom waypost_may_receive_marketing_v1 is false. Outcomes: those of v2, and
--   template_unavailable  no such template (name, language) in message_templates, or not APPROVED
--   marketing_refused     a MARKETING template to a contact who opted out of marketing (or is blocked)
CREATE OR REPLACE FUNCTION waypost_queue_operator_message_v3(
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
    v_template message_templates%ROWTYPE;
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
    IF p_type = 'template' THEN
        SELECT t.* INTO v_template FROM message_templates t
         WHERE t.name = p_payload->>'name' AND t.language = p_payload->'language'->>'code';
        IF v_template.id IS NULL OR v_template.status <> 'APPROVED' THEN
            RETURN QUERY SELECT NULL::bigint, 'template_unavailable'::text;
            RETURN;
        END IF;
        IF v_template.category = 'MARKETING' AND NOT waypost_may_receive_marketing_v1(
            v_conversation.phone_number_id, v_conversation.wa_id, v_conversation.user_id) THEN
            RETURN QUERY SELECT NULL::bigint, 'marketing_refused'::text;
            RETURN;
        END IF;
    ELSIF v_conversation.last_inbound_at IS NULL OR v_conversation.last_inbound_at < now() - p_window THEN
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
