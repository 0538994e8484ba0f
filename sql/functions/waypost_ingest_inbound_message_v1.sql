-- Insert-or-ignore of one inbound message, keyed by its Graph message id (wamid).
-- created = false means the message was already stored (a redelivery, or a concurrent delivery
-- that committed first): nothing was written and no job exists for this call to defer.
-- When new, the live conversation is upserted and, if a reply is due, its outbound_jobs row added.
CREATE OR REPLACE FUNCTION waypost_ingest_inbound_message_v1(
    p_phone_number_id text,
    p_wa_id text,
    p_contact_name text,
    p_wa_message_id text,
    p_type text,
    p_body text,
    p_payload jsonb,
    p_contact_sent_at timestamptz,
    p_needs_reply boolean,
    p_request_id text
) RETURNS TABLE (message_id bigint, conversation_id bigint, created boolean, outbound_job_id bigint)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_conversation_id bigint;
    v_message_id bigint;
    v_job_id bigint;
BEGIN
    -- Redeliveries are the common duplicate: answer them without locking the conversation.
    SELECT m.id, m.conversation_id INTO v_message_id, v_conversation_id
      FROM messages m WHERE m.wa_message_id = p_wa_message_id;
    IF FOUND THEN
        RETURN QUERY SELECT v_message_id, v_conversation_id, false, NULL::bigint;
        RETURN;
    END IF;

    INSERT INTO conversations AS c (phone_number_id, wa_id, contact_name, last_inbound_at)
    VALUES (p_phone_number_id, p_wa_id, p_contact_name, p_contact_sent_at)
    ON CONFLICT (phone_number_id, wa_id) WHERE deleted_at IS NULL DO UPDATE
       SET contact_name = COALESCE(EXCLUDED.contact_name, c.contact_name),
           last_inbound_at = GREATEST(c.last_inbound_at, EXCLUDED.last_inbound_at),
           updated_at = now()
    RETURNING c.id INTO v_conversation_id;

    INSERT INTO messages AS m (conversation_id, direction, author, wa_message_id, type, body, payload,
                               status, contact_sent_at)
    VALUES (v_conversation_id, 'inbound', 'contact', p_wa_message_id, p_type, p_body, p_payload,
            'received', p_contact_sent_at)
    ON CONFLICT (wa_message_id) DO NOTHING
    RETURNING m.id INTO v_message_id;

    IF v_message_id IS NULL THEN
        SELECT m.id, m.conversation_id INTO v_message_id, v_conversation_id
          FROM messages m WHERE m.wa_message_id = p_wa_message_id;
        RETURN QUERY SELECT v_message_id, v_conversation_id, false, NULL::bigint;
        RETURN;
    END IF;

    IF p_needs_reply THEN
        INSERT INTO outbound_jobs AS j (inbound_message_id, conversation_id, request_id)
        VALUES (v_message_id, v_conversation_id, p_request_id)
        RETURNING j.id INTO v_job_id;
    END IF;
    RETURN QUERY SELECT v_message_id, v_conversation_id, true, v_job_id;
END;
$$;
