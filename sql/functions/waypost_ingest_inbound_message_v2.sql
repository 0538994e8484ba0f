-- v1 for contacts known by phone number, BSUID or both (waypost_resolve_conversation_v1), and for
-- the system messages that change those identifiers (p_new_wa_id / p_new_user_id).
-- Insert-or-ignore keyed by the Graph message id; created = false means nothing was written.
CREATE OR REPLACE FUNCTION waypost_ingest_inbound_message_v2(
    p_phone_number_id text,
    p_wa_id text,
    p_user_id text,
    p_parent_user_id text,
    p_username text,
    p_contact_name text,
    p_new_wa_id text,
    p_new_user_id text,
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

    v_conversation_id := waypost_resolve_conversation_v1(
        p_phone_number_id, p_wa_id, p_user_id, p_parent_user_id, p_username, p_contact_name, p_contact_sent_at);

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

    IF p_new_wa_id IS NOT NULL OR p_new_user_id IS NOT NULL THEN
        PERFORM waypost_change_contact_identifiers_v1(v_conversation_id, p_new_wa_id, p_new_user_id);
    END IF;
    IF p_needs_reply THEN
        INSERT INTO outbound_jobs AS j (inbound_message_id, conversation_id, request_id)
        VALUES (v_message_id, v_conversation_id, p_request_id)
        RETURNING j.id INTO v_job_id;
    END IF;
    RETURN QUERY SELECT v_message_id, v_conversation_id, true, v_job_id;
END;
$$;
