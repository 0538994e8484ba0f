-- v2, plus: the status's `pricing` object (category, type, billable), when present, is stored on
-- the message (pricing_category, pricing_type, billable, priced_at). Same arguments and results.
CREATE OR REPLACE FUNCTION waypost_apply_message_status_v3(
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
BEGIN
    INSERT INTO message_statuses AS s (wa_message_id, status, status_at, recipient_id,
                                       biz_opaque_callback_data, errors, payload)
    VALUES (p_wa_message_id, p_status, p_status_at, p_recipient_id, p_callback_data, p_errors, p_payload)
    ON CONFLICT (wa_message_id, status) DO NOTHING
    RETURNING s.id INTO v_status_id;
    IF v_status_id IS NULL THEN
        RETURN 'duplicate';
    END IF;

    SELECT m.id INTO v_message_id
      FROM messages m WHERE m.wa_message_id = p_wa_message_id AND m.direction = 'outbound';
    IF NOT FOUND AND p_callback_data IS NOT NULL THEN
        UPDATE messages m SET wa_message_id = p_wa_message_id, updated_at = clock_timestamp()
         WHERE m.idempotency_key = p_callback_data AND m.direction = 'outbound'
           AND m.wa_message_id IS NULL
        RETURNING m.id INTO v_message_id;
    END IF;
    IF v_message_id IS NULL THEN
        RETURN 'pending';
    END IF;

    UPDATE message_statuses SET message_id = v_message_id WHERE id = v_status_id;
    -- Meta puts the pricing on one status of the message (delivered or read, whichever comes): kept
    -- even when that status itself is stale, since a read may overtake its delivered.
    IF jsonb_typeof(p_payload -> 'pricing') = 'object' THEN
        UPDATE messages
           SET pricing_category = left(p_payload #>> '{pricing,category}', 64),
               pricing_type = left(p_payload #>> '{pricing,type}', 64),
               billable = CASE WHEN jsonb_typeof(p_payload #> '{pricing,billable}') = 'boolean'
                               THEN (p_payload #>> '{pricing,billable}')::boolean END,
               priced_at = COALESCE(priced_at, p_status_at)
         WHERE id = v_message_id;
    END IF;
    IF NOT waypost_advance_message_status_v1(v_message_id, p_status, p_status_at, p_errors) THEN
        RETURN 'stale';
    END IF;
    UPDATE messages SET sending_since = NULL WHERE id = v_message_id AND sending_since IS NOT NULL;
    IF p_status = 'failed' THEN
        PERFORM waypost_notify_send_failed_v1(v_message_id, p_errors);
    ELSE
        PERFORM waypost_finish_reply_job_v1(v_message_id);
    END IF;
    RETURN 'applied';
END;
$$;
