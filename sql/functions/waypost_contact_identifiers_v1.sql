-- Everything one contact is known by, from one of their identifiers (a phone number or a BSUID):
-- every conversation, live, deleted or merged away, that names any identifier found so far, and
-- every identifier those conversations and their inbound messages carry (the number a
-- `user_changed_number` replaced, the BSUID a conversation was merged from), until nothing new turns up.
CREATE OR REPLACE FUNCTION waypost_contact_identifiers_v1(p_identifier text)
RETURNS TABLE (identifiers text[], conversation_ids bigint[])
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_ids text[] := ARRAY[p_identifier];
    v_convs bigint[] := '{}';
    v_next_ids text[];
    v_next_convs bigint[];
BEGIN
    LOOP
        SELECT coalesce(array_agg(c.id ORDER BY c.id), '{}') INTO v_next_convs
        FROM conversations c
        WHERE c.wa_id = ANY (v_ids) OR c.user_id = ANY (v_ids);
        SELECT coalesce(array_agg(DISTINCT found.x ORDER BY found.x), '{}') INTO v_next_ids
        FROM (
            SELECT unnest(v_ids) AS x
            UNION SELECT c.wa_id FROM conversations c WHERE c.id = ANY (v_next_convs)
            UNION SELECT c.user_id FROM conversations c WHERE c.id = ANY (v_next_convs)
            UNION SELECT unnest(ARRAY[
                      m.payload ->> 'from', m.payload ->> 'from_user_id',
                      m.payload -> 'system' ->> 'wa_id', m.payload -> 'system' ->> 'new_wa_id',
                      m.payload -> 'system' ->> 'user_id', m.payload -> 'system' ->> 'new_user_id',
                      m.payload -> 'system' ->> 'previous_wa_id', m.payload -> 'system' ->> 'previous_user_id'])
                  FROM messages m
                  WHERE m.conversation_id = ANY (v_next_convs) AND m.direction = 'inbound'
                    AND jsonb_typeof(m.payload) = 'object'
        ) found
        WHERE found.x IS NOT NULL AND found.x <> '';
        EXIT WHEN v_next_convs = v_convs AND v_next_ids = v_ids;
        v_convs := v_next_convs;
        v_ids := v_next_ids;
    END LOOP;
    RETURN QUERY SELECT v_ids, v_convs;
END;
$$;
