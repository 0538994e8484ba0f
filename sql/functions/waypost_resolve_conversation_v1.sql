-- The live conversation of a contact on a business number, found by phone number (wa_id) or BSUID
-- (user_id), whichever arrive; created when there is none. When the identifiers name two
-- conversations (each seen alone before), they are merged into the older. Identifiers that arrive
-- are recorded on it, the newest winning (a contact's current phone number or BSUID).
CREATE OR REPLACE FUNCTION waypost_resolve_conversation_v1(
    p_phone_number_id text,
    p_wa_id text,
    p_user_id text,
    p_parent_user_id text,
    p_username text,
    p_contact_name text,
    p_last_inbound_at timestamptz
) RETURNS bigint
    LANGUAGE plpgsql
AS $$
DECLARE
    v_ids bigint[];
    v_keep bigint;
    v_other bigint;
BEGIN
    IF p_wa_id IS NULL AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'a contact needs a phone number (wa_id) or a user id (BSUID)';
    END IF;
    LOOP
        SELECT array_agg(id ORDER BY id) INTO v_ids FROM (
            SELECT id FROM conversations
             WHERE phone_number_id = p_phone_number_id AND deleted_at IS NULL
               AND ((p_wa_id IS NOT NULL AND wa_id = p_wa_id) OR (p_user_id IS NOT NULL AND user_id = p_user_id))
             ORDER BY id
               FOR UPDATE
        ) AS found;
        IF v_ids IS NULL THEN
            INSERT INTO conversations (phone_number_id, wa_id, user_id, parent_user_id, username, contact_name,
                                       last_inbound_at)
            VALUES (p_phone_number_id, p_wa_id, p_user_id, p_parent_user_id, p_username, p_contact_name,
                    p_last_inbound_at)
            ON CONFLICT DO NOTHING
            RETURNING id INTO v_keep;
            IF v_keep IS NOT NULL THEN
                RETURN v_keep;
            END IF;
            CONTINUE;  -- a concurrent delivery created it first: find it
        END IF;
        v_keep := v_ids[1];
        FOREACH v_other IN ARRAY v_ids[2:] LOOP
            PERFORM waypost_merge_conversations_v1(v_keep, v_other);
        END LOOP;
        UPDATE conversations
           SET wa_id = COALESCE(p_wa_id, wa_id),
               user_id = COALESCE(p_user_id, user_id),
               parent_user_id = COALESCE(p_parent_user_id, parent_user_id),
               username = COALESCE(p_username, username),
               contact_name = COALESCE(p_contact_name, contact_name),
               last_inbound_at = GREATEST(last_inbound_at, p_last_inbound_at),
               updated_at = clock_timestamp()
         WHERE id = v_keep;
        RETURN v_keep;
    END LOOP;
END;
$$;
