-- Claims the send of the outbound message with idempotency key `p_idempotency_key`.
-- v2: the message's WhatsApp type (text, image, document, interactive, reaction...) and the Graph
-- object for it (`payload`, as decided the first time) are stored with the claim and returned, so a
-- retry resends exactly what was decided, whatever its kind.
-- Only a 'claimed' or 'resend' outcome allows the caller to call the Graph API, and at most one
-- caller at a time gets one: the row is created, or locked, here.
--   claimed          first attempt (row created in 'sending'), or a retry after a definite failure
--   resend           the previous attempt's outcome stayed unknown past stale_after + grace:
--                    sent again, accepting a possible duplicate (at-least-once)
--   in_progress      another attempt is in flight
--   awaiting_status  the previous attempt's outcome is unknown; a status webhook may complete it
--   already_sent     nothing to do
--   failed           the send failed for good
CREATE OR REPLACE FUNCTION waypost_claim_send_v2(
    p_conversation_id bigint,
    p_idempotency_key text,
    p_author text,
    p_type text,
    p_body text,
    p_payload jsonb,
    p_reply_to_message_id bigint,
    p_sending_stale_after interval,
    p_unknown_grace interval
) RETURNS TABLE (message_id bigint, outcome text, type text, body text, payload jsonb, send_attempts integer)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_message messages%ROWTYPE;
    v_now timestamptz := clock_timestamp();
    v_outcome text;
BEGIN
    INSERT INTO messages AS m (conversation_id, direction, author, idempotency_key, type, body, payload,
                               status, reply_to_message_id, send_attempts, sending_since)
    VALUES (p_conversation_id, 'outbound', p_author, p_idempotency_key, p_type, p_body, p_payload,
            'sending', p_reply_to_message_id, 1, v_now)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING m.* INTO v_message;
    IF v_message.id IS NOT NULL THEN
        RETURN QUERY SELECT v_message.id, 'claimed'::text, v_message.type, v_message.body, v_message.payload,
                            v_message.send_attempts;
        RETURN;
    END IF;

    SELECT m.* INTO v_message FROM messages m WHERE m.idempotency_key = p_idempotency_key FOR UPDATE;
    v_outcome := CASE
        WHEN v_message.status IN ('sent', 'delivered', 'read', 'played') THEN 'already_sent'
        WHEN v_message.status = 'failed' THEN 'failed'
        WHEN v_message.status = 'sending' AND v_message.sending_since IS NULL THEN 'claimed'
        WHEN v_message.sending_since < v_now - p_sending_stale_after - p_unknown_grace THEN 'resend'
        WHEN v_message.status = 'sending' AND v_message.sending_since >= v_now - p_sending_stale_after
            THEN 'in_progress'
        ELSE 'awaiting_status'
    END;
    IF v_outcome IN ('claimed', 'resend') THEN
        UPDATE messages m
           SET status = 'sending', sending_since = v_now, send_attempts = m.send_attempts + 1,
               updated_at = v_now
         WHERE m.id = v_message.id
        RETURNING m.* INTO v_message;
    ELSIF v_outcome = 'awaiting_status' AND v_message.status = 'sending' THEN
        -- the attempt in flight outlived any timeout: its worker died mid-send
        UPDATE messages m SET status = 'unknown', updated_at = v_now WHERE m.id = v_message.id;
    END IF;
    RETURN QUERY SELECT v_message.id, v_outcome, v_message.type, v_message.body, v_message.payload,
                        v_message.send_attempts;
END;
$$;
