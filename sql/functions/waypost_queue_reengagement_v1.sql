-- Queues the re-engagement template of an AI reply that fell due after the 24-hour window closed
-- (WAYPOST_REENGAGE_TEMPLATE, README "Message templates"): the reply's own outbound message, under
-- the reply's idempotency key (author 'ai', type 'template', p_payload the Graph template object), left
-- 'sending' with no claim for worker.sending to claim and send. The conversation row is locked, so two
-- replies due in the same closed window decide one after the other. Outcomes:
--   queued                the message row was created
--   duplicate             a message with this key exists (an earlier run queued it): send that one
--   conversation_missing  the conversation is gone or deleted
--   ai_paused             the conversation's AI was paused (an operator took over) since the reply began
--   contact_wrote         the contact wrote after p_last_inbound_at: the window is open again
--   template_missing      no (name, language) in message_templates (detail: name/language)
--   template_unavailable  stored but not APPROVED (detail: its status)
--   parameter_mismatch    its body needs another number of parameters, or it has header or button
--                         parameters (detail: what it needs)
--   marketing_refused     a MARKETING template to a contact for whom waypost_may_receive_marketing_v1
--                         is false
--   already_reengaged     a template (not failed), this kind or an operator's, was already queued
--                         since the contact last wrote: at most one per closed window (detail: its id)
CREATE OR REPLACE FUNCTION waypost_queue_reengagement_v1(
    p_conversation_id bigint,
    p_reply_to_message_id bigint,
    p_idempotency_key text,
    p_body text,
    p_payload jsonb,
    p_parameters integer,
    p_last_inbound_at timestamptz
) RETURNS TABLE (message_id bigint, outcome text, detail text)
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
        RETURN QUERY SELECT NULL::bigint, 'conversation_missing'::text, NULL::text;
        RETURN;
    END IF;
    SELECT m.id INTO v_message_id FROM messages m WHERE m.idempotency_key = p_idempotency_key;
    IF v_message_id IS NOT NULL THEN
        RETURN QUERY SELECT v_message_id, 'duplicate'::text, NULL::text;
        RETURN;
    END IF;
    IF NOT v_conversation.ai_enabled THEN
        RETURN QUERY SELECT NULL::bigint, 'ai_paused'::text, NULL::text;
        RETURN;
    END IF;
    IF v_conversation.last_inbound_at > p_last_inbound_at THEN
        RETURN QUERY SELECT NULL::bigint, 'contact_wrote'::text, NULL::text;
        RETURN;
    END IF;
    SELECT t.* INTO v_template FROM message_templates t
     WHERE t.name = p_payload->>'name' AND t.language = p_payload->'language'->>'code';
    IF v_template.id IS NULL THEN
        RETURN QUERY SELECT NULL::bigint, 'template_missing'::text,
                            (p_payload->>'name') || '/' || (p_payload->'language'->>'code');
        RETURN;
    END IF;
    IF v_template.status <> 'APPROVED' THEN
        RETURN QUERY SELECT NULL::bigint, 'template_unavailable'::text, v_template.status;
        RETURN;
    END IF;
    IF v_template.body_params <> p_parameters OR v_template.header_params > 0 OR v_template.button_params > 0 THEN
        RETURN QUERY SELECT NULL::bigint, 'parameter_mismatch'::text,
                            format('its body takes %s parameter(s), %s configured; header parameters %s, button parameters %s',
                                   v_template.body_params, p_parameters, v_template.header_params,
                                   v_template.button_params);
        RETURN;
    END IF;
    IF v_template.category = 'MARKETING' AND NOT waypost_may_receive_marketing_v1(
        v_conversation.phone_number_id, v_conversation.wa_id, v_conversation.user_id) THEN
        RETURN QUERY SELECT NULL::bigint, 'marketing_refused'::text, NULL::text;
        RETURN;
    END IF;
    SELECT m.id INTO v_message_id FROM messages m
     WHERE m.conversation_id = p_conversation_id AND m.direction = 'outbound'
       AND m.type = 'template' AND m.status <> 'failed'
       AND (v_conversation.last_inbound_at IS NULL OR m.created_at > v_conversation.last_inbound_at)
     ORDER BY m.id DESC LIMIT 1;
    IF v_message_id IS NOT NULL THEN
        RETURN QUERY SELECT NULL::bigint, 'already_reengaged'::text, v_message_id::text;
        RETURN;
    END IF;
    INSERT INTO messages AS m (conversation_id, direction, author, idempotency_key, type, body, payload, status,
                               reply_to_message_id, send_attempts, sending_since)
    VALUES (p_conversation_id, 'outbound', 'ai', p_idempotency_key, 'template', p_body, p_payload, 'sending',
            p_reply_to_message_id, 0, NULL)
    RETURNING m.id INTO v_message_id;
    RETURN QUERY SELECT v_message_id, 'queued'::text, NULL::text;
END;
$$;
