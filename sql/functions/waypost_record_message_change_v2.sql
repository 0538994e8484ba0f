-- v2: applies with waypost_apply_message_changes_v2 (turns, migration 0031).
-- Records an edit or revoke event (already stored as the message p_event_message_id) and applies it
-- to the message it names, when Waypost has that message. Returns 'applied', or 'pending' when the
-- message is unknown (yet): the event stays shown as such, and applies when the message arrives.
CREATE OR REPLACE FUNCTION waypost_record_message_change_v2(
    p_event_message_id bigint,
    p_kind text,
    p_original_wa_message_id text,
    p_body text,
    p_changed_at timestamptz
) RETURNS text
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO message_changes (event_message_id, kind, original_wa_message_id, body_after, changed_at)
    VALUES (p_event_message_id, p_kind, p_original_wa_message_id, CASE WHEN p_kind = 'edit' THEN p_body END,
            p_changed_at)
    ON CONFLICT (event_message_id) DO NOTHING;
    PERFORM waypost_apply_message_changes_v2(p_original_wa_message_id);
    RETURN (SELECT CASE WHEN c.message_id IS NULL THEN 'pending' ELSE 'applied' END
              FROM message_changes c WHERE c.event_message_id = p_event_message_id);
END;
$$;
