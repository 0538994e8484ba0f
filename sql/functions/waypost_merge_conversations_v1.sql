-- Folds conversation `p_other` into `p_keep` (same business number, same person known under two
-- identifiers): its messages, jobs and notifications move over, identifiers the kept one lacks are
-- carried over, and `p_other` is retired (soft-deleted, which frees its identifiers).
CREATE OR REPLACE FUNCTION waypost_merge_conversations_v1(p_keep bigint, p_other bigint) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    v_other conversations%ROWTYPE;
BEGIN
    UPDATE conversations SET deleted_at = clock_timestamp(), updated_at = clock_timestamp()
     WHERE id = p_other AND deleted_at IS NULL
    RETURNING * INTO v_other;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE messages SET conversation_id = p_keep WHERE conversation_id = p_other;
    UPDATE outbound_jobs SET conversation_id = p_keep WHERE conversation_id = p_other;
    UPDATE notifications SET conversation_id = p_keep WHERE conversation_id = p_other;
    UPDATE conversations
       SET wa_id = COALESCE(wa_id, v_other.wa_id),
           user_id = COALESCE(user_id, v_other.user_id),
           parent_user_id = COALESCE(parent_user_id, v_other.parent_user_id),
           username = COALESCE(username, v_other.username),
           contact_name = COALESCE(contact_name, v_other.contact_name),
           last_inbound_at = GREATEST(last_inbound_at, v_other.last_inbound_at),
           ai_enabled = ai_enabled AND v_other.ai_enabled,
           updated_at = clock_timestamp()
     WHERE id = p_keep;
    INSERT INTO notifications (conversation_id, kind, body)
    VALUES (p_keep, 'conversations_merged',
            format('Conversation %s was merged into this one: the same contact arrived under another identifier.',
                   p_other));
END;
$$;
