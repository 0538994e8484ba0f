-- Leaves a 'send_failed' notification for an outbound message, quoting Meta's first error.
CREATE OR REPLACE FUNCTION waypost_notify_send_failed_v1(p_message_id bigint, p_errors jsonb) RETURNS void
    LANGUAGE sql
AS $$
    INSERT INTO notifications (conversation_id, message_id, kind, body)
    SELECT m.conversation_id, m.id, 'send_failed',
           'WhatsApp could not deliver a reply'
           || COALESCE(': error ' || (e ->> 'code'), '')
           || COALESCE(' ' || COALESCE(e ->> 'title', e ->> 'message'), '')
           || COALESCE(' (' || (e -> 'error_data' ->> 'details') || ')', '')
      FROM messages m
      LEFT JOIN LATERAL (SELECT CASE jsonb_typeof(p_errors) WHEN 'array' THEN p_errors -> 0
                                     ELSE p_errors END AS e) AS first_error ON true
     WHERE m.id = p_message_id;
$$;
