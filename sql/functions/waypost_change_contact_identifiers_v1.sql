-- A system message said the contact's phone number (user_changed_number) or BSUID
-- (user_changed_user_id) changed: the conversation takes the new identifier and goes on. A live
-- conversation already holding the new identifier is merged into it.
CREATE OR REPLACE FUNCTION waypost_change_contact_identifiers_v1(
    p_conversation_id bigint, p_new_wa_id text, p_new_user_id text
) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    v_phone_number_id text;
    v_other bigint;
BEGIN
    SELECT phone_number_id INTO v_phone_number_id FROM conversations WHERE id = p_conversation_id FOR UPDATE;
    FOR v_other IN
        SELECT id FROM conversations
         WHERE phone_number_id = v_phone_number_id AND deleted_at IS NULL AND id <> p_conversation_id
           AND ((p_new_wa_id IS NOT NULL AND wa_id = p_new_wa_id)
                OR (p_new_user_id IS NOT NULL AND user_id = p_new_user_id))
         ORDER BY id
           FOR UPDATE
    LOOP
        PERFORM waypost_merge_conversations_v1(p_conversation_id, v_other);
    END LOOP;
    UPDATE conversations
       SET wa_id = COALESCE(p_new_wa_id, wa_id), user_id = COALESCE(p_new_user_id, user_id),
           updated_at = clock_timestamp()
     WHERE id = p_conversation_id;
END;
$$;
