-- v2 (migration 0045, issue 17): v1, closing the job with waypost_finish_reply_job_v2 (its comment says
-- why). v1's comment follows.
-- Records an accepted send, in one transaction: the Graph message id, status 'sent' and sent_at;
-- any status webhooks that arrived first (by message id or callback key) applied in order; and the
-- outbound job closed as done. Returns false when the message was not found.
CREATE OR REPLACE FUNCTION waypost_record_send_v2(
    p_message_id bigint, p_wa_message_id text, p_sent_at timestamptz
) RETURNS boolean
    LANGUAGE plpgsql
AS $$
DECLARE
    v_message messages%ROWTYPE;
    v_early message_statuses%ROWTYPE;
BEGIN
    UPDATE messages
       SET wa_message_id = COALESCE(wa_message_id, p_wa_message_id),
           status = CASE WHEN status IN ('sending', 'unknown') THEN 'sent' ELSE status END,
           sent_at = COALESCE(sent_at, p_sent_at),
           sending_since = NULL,
           error = CASE WHEN status IN ('sending', 'unknown') THEN NULL ELSE error END,
           updated_at = clock_timestamp()
     WHERE id = p_message_id AND direction = 'outbound'
    RETURNING * INTO v_message;
    IF NOT FOUND THEN
        RETURN false;
    END IF;

    FOR v_early IN
        SELECT * FROM message_statuses
         WHERE message_id IS NULL
           AND (wa_message_id = v_message.wa_message_id
                OR biz_opaque_callback_data = v_message.idempotency_key)
         ORDER BY COALESCE(waypost_status_rank_v1(status), 99), id
         FOR UPDATE
    LOOP
        UPDATE message_statuses SET message_id = p_message_id WHERE id = v_early.id;
        IF waypost_advance_message_status_v1(p_message_id, v_early.status, v_early.status_at, v_early.errors)
           AND v_early.status = 'failed' THEN
            PERFORM waypost_notify_send_failed_v1(p_message_id, v_early.errors);
        END IF;
    END LOOP;

    PERFORM waypost_finish_reply_job_v2(p_message_id);
    RETURN true;
END;
$$;
