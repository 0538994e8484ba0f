-- Moves one outbound message forward to `p_status` and stamps that status's timestamp column.
-- Returns true when the status changed. A late status still fills its own timestamp
-- (a 'delivered' that arrives after 'read' sets delivered_at; the status stays 'read').
CREATE OR REPLACE FUNCTION waypost_advance_message_status_v1(
    p_message_id bigint, p_status text, p_status_at timestamptz, p_errors jsonb
) RETURNS boolean
    LANGUAGE plpgsql
AS $$
DECLARE
    v_current text;
    v_moves boolean;
BEGIN
    SELECT status INTO v_current FROM messages
     WHERE id = p_message_id AND direction = 'outbound' FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    v_moves := CASE
        WHEN v_current = 'failed' THEN false
        -- failed may follow sent or delivered, never a message the contact has read
        WHEN p_status = 'failed' THEN COALESCE(waypost_status_rank_v1(v_current) < 3, false)
        ELSE COALESCE(waypost_status_rank_v1(p_status) > waypost_status_rank_v1(v_current), false)
    END;
    UPDATE messages
       SET status = CASE WHEN v_moves THEN p_status ELSE status END,
           error = CASE WHEN v_moves AND p_status = 'failed' THEN p_errors ELSE error END,
           failed_at = CASE WHEN v_moves AND p_status = 'failed' THEN p_status_at ELSE failed_at END,
           sent_at = CASE WHEN p_status = 'sent' THEN COALESCE(sent_at, p_status_at) ELSE sent_at END,
           delivered_at = CASE WHEN p_status = 'delivered' THEN COALESCE(delivered_at, p_status_at)
                               ELSE delivered_at END,
           read_at = CASE WHEN p_status IN ('read', 'played') THEN COALESCE(read_at, p_status_at)
                          ELSE read_at END,
           updated_at = now()
     WHERE id = p_message_id;
    RETURN v_moves;
END;
$$;
