-- v2 (migration 0040, issue 17): v1's rules, with plans that do not depend on the table's statistics.
-- v1 found the contact with one statement, phone number OR BSUID; the plan PL/pgSQL cached before
-- conversations was first analyzed (a fresh database's first minute, every benchmark's) scanned every
-- conversation of the business number: per call, 0.9 ms at 500 conversations and 2.8 at 4,000
-- (bench.contact_lookup). Here each identifier is one equality on its unique index
-- (conversations_live_contact_key, conversations_live_user_key), planned as one row whatever the
-- statistics say; the rows found are then locked one at a time by primary key, in id order as v1
-- locked them (two deliveries naming the same two conversations never deadlock), and checked again
-- under the lock. An identifier it adds may have been taken meanwhile by a conversation created or
-- changed by a concurrent delivery (a BSUID-only message creating the BSUID's conversation while this
-- one, with both identifiers, adds that BSUID to the phone number's): the update's duplicate key then
-- means "look again", which finds both and merges them (v1 failed the delivery with a 500, and the
-- merge waited for Meta's redelivery). v1's comment follows.
-- The live conversation of a contact on a business number, found by phone number (wa_id) or BSUID
-- (user_id), whichever arrive; created when there is none. When the identifiers name two
-- conversations (each seen alone before), they are merged into the older. Identifiers that arrive
-- are recorded on it, the newest winning (a contact's current phone number or BSUID).
CREATE OR REPLACE FUNCTION waypost_resolve_conversation_v2(
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
    v_by_phone bigint;
    v_by_user bigint;
    v_ids bigint[];
    v_id bigint;
    v_row record;
    v_keep bigint;
    v_keep_wa_id text;
    v_keep_user_id text;
    v_other bigint;
BEGIN
    IF p_wa_id IS NULL AND p_user_id IS NULL THEN
        RAISE EXCEPTION 'a contact needs a phone number (wa_id) or a user id (BSUID)';
    END IF;
    LOOP
        v_by_phone := NULL;
        v_by_user := NULL;
        IF p_wa_id IS NOT NULL THEN
            SELECT id INTO v_by_phone FROM conversations
             WHERE phone_number_id = p_phone_number_id AND wa_id = p_wa_id AND deleted_at IS NULL;
        END IF;
        IF p_user_id IS NOT NULL THEN
            SELECT id INTO v_by_user FROM conversations
             WHERE phone_number_id = p_phone_number_id AND user_id = p_user_id AND deleted_at IS NULL;
        END IF;
        IF v_by_phone IS NULL AND v_by_user IS NULL THEN
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
        -- Locked in id order, each by its primary key alone, then checked: still the contact's once
        -- locked (a merge or a deletion may have changed a row since the lookup), else look again.
        -- One id a statement: `id IN (a, b)`, like a condition on the identifiers, was planned as a
        -- scan of the table while it was young.
        v_ids := '{}';
        FOREACH v_id IN ARRAY ARRAY[least(v_by_phone, v_by_user), greatest(v_by_phone, v_by_user)] LOOP
            -- least and greatest skip a NULL: one conversation (found by one identifier, or by both)
            -- comes twice, and is taken once
            CONTINUE WHEN v_id = ANY (v_ids);
            SELECT phone_number_id, wa_id, user_id, deleted_at INTO v_row
              FROM conversations WHERE id = v_id FOR UPDATE;
            IF FOUND AND v_row.phone_number_id = p_phone_number_id AND v_row.deleted_at IS NULL
               AND (v_row.wa_id = p_wa_id OR v_row.user_id = p_user_id) THEN
                IF cardinality(v_ids) = 0 THEN
                    v_keep_wa_id := v_row.wa_id;
                    v_keep_user_id := v_row.user_id;
                END IF;
                v_ids := v_ids || v_id;
            END IF;
        END LOOP;
        IF cardinality(v_ids) = 0 THEN
            CONTINUE;
        END IF;
        v_keep := v_ids[1];
        FOREACH v_other IN ARRAY v_ids[2:] LOOP
            PERFORM waypost_merge_conversations_v1(v_keep, v_other);
        END LOOP;
        IF (p_wa_id IS NOT NULL AND p_wa_id IS DISTINCT FROM v_keep_wa_id)
           OR (p_user_id IS NOT NULL AND p_user_id IS DISTINCT FROM v_keep_user_id) THEN
            -- A subtransaction, only when an identifier is added or changed (rarely): the duplicate key
            -- undoes this update alone, the locks and merges stay, and the loop looks again.
            BEGIN
                UPDATE conversations
                   SET wa_id = COALESCE(p_wa_id, wa_id), user_id = COALESCE(p_user_id, user_id)
                 WHERE id = v_keep;
            EXCEPTION WHEN unique_violation THEN
                CONTINUE;
            END;
        END IF;
        UPDATE conversations
           SET parent_user_id = COALESCE(p_parent_user_id, parent_user_id),
               username = COALESCE(p_username, username),
               contact_name = COALESCE(p_contact_name, contact_name),
               last_inbound_at = GREATEST(last_inbound_at, p_last_inbound_at),
               updated_at = clock_timestamp()
         WHERE id = v_keep;
        RETURN v_keep;
    END LOOP;
END;
$$;
