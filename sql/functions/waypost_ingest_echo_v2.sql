-- v2 (migration 0040, issue 17): v1 with the contact's conversation found by
-- waypost_resolve_conversation_v2, whose lookup's plan does not depend on the table's statistics.
-- Same arguments and results as v1, whose comment follows.
-- A message the business sent from the WhatsApp Business app (a smb_message_echoes item): an outbound
-- row of author 'operator', source 'phone_app', already sent. Insert-or-ignore keyed by the Graph
-- message id (created = false: a redelivery, nothing written). It does not open or extend the 24-hour
-- window (only the contact's messages do). With p_pause_ai, the conversation's AI is paused, so the
-- owner and the AI never talk over each other, and the operators are told why (paused = true).
CREATE OR REPLACE FUNCTION waypost_ingest_echo_v2(
    p_phone_number_id text,
    p_wa_id text,
    p_user_id text,
    p_wa_message_id text,
    p_type text,
    p_body text,
    p_payload jsonb,
    p_sent_at timestamptz,
    p_pause_ai boolean
) RETURNS TABLE (message_id bigint, conversation_id bigint, created boolean, paused boolean)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_conversation_id bigint;
    v_message_id bigint;
    v_paused boolean := false;
BEGIN
    SELECT m.id, m.conversation_id INTO v_message_id, v_conversation_id
      FROM messages m WHERE m.wa_message_id = p_wa_message_id;
    IF FOUND THEN
        RETURN QUERY SELECT v_message_id, v_conversation_id, false, false;
        RETURN;
    END IF;

    v_conversation_id := waypost_resolve_conversation_v2(
        p_phone_number_id, p_wa_id, p_user_id, NULL, NULL, NULL, NULL);

    INSERT INTO messages AS m (conversation_id, direction, author, wa_message_id, idempotency_key, type, body,
                               payload, status, sent_at, source)
    VALUES (v_conversation_id, 'outbound', 'operator', p_wa_message_id, 'phone_app:' || p_wa_message_id, p_type,
            p_body, p_payload, 'sent', p_sent_at, 'phone_app')
    ON CONFLICT DO NOTHING
    RETURNING m.id INTO v_message_id;
    IF v_message_id IS NULL THEN
        SELECT m.id, m.conversation_id INTO v_message_id, v_conversation_id
          FROM messages m WHERE m.wa_message_id = p_wa_message_id;
        RETURN QUERY SELECT v_message_id, v_conversation_id, false, false;
        RETURN;
    END IF;

    IF p_pause_ai THEN
        UPDATE conversations c SET ai_enabled = false, updated_at = now()
         WHERE c.id = v_conversation_id AND c.ai_enabled
        RETURNING true INTO v_paused;
        IF v_paused THEN
            INSERT INTO notifications (conversation_id, message_id, kind, body)
            VALUES (v_conversation_id, v_message_id, 'ai_paused',
                    'The business replied from the WhatsApp Business app: the AI is paused for this conversation '
                    || 'so the two do not talk over each other. Resume it in the inbox to hand the conversation back.');
        END IF;
    END IF;
    RETURN QUERY SELECT v_message_id, v_conversation_id, true, coalesce(v_paused, false);
END;
$$;
