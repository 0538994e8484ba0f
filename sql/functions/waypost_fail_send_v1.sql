-- Records a send that cannot succeed, in one transaction: the message 'failed' with Meta's error,
-- a notification for the operator, and the outbound job (if any) 'failed' with the reason.
CREATE OR REPLACE FUNCTION waypost_fail_send_v1(
    p_message_id bigint, p_errors jsonb, p_reason text
) RETURNS void
    LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE messages
       SET status = 'failed', error = p_errors, failed_at = clock_timestamp(), sending_since = NULL,
           updated_at = clock_timestamp()
     WHERE id = p_message_id AND status IN ('sending', 'unknown');
    IF FOUND THEN
        PERFORM waypost_notify_send_failed_v1(p_message_id, p_errors);
    END IF;
    UPDATE outbound_jobs j
       SET status = 'failed', last_error = p_reason, finished_at = clock_timestamp(),
           updated_at = clock_timestamp()
      FROM messages m
     WHERE m.id = p_message_id AND m.author = 'ai' AND j.inbound_message_id = m.reply_to_message_id
       AND j.status IN ('pending', 'running');
END;
$$;
