-- v2: turns (migration 0031, README "Turns"). A message's reply is its turn's (messages.turn_id): it is
-- still to come while the turn is 'gathering' or 'pending'; a revoke skips the turn only once every
-- message of it is deleted (the others are still answered).
-- Applies the edits and revokes waiting for a message (by its Graph id), oldest first; how many.
-- Called when an edit or revoke is recorded, and when a new message arrives (its edit may have come
-- first: Meta does not promise order). A change applies only inside the conversation of the event
-- that names it, and to a message of the event's direction (a contact cannot edit the AI's replies).
-- An edit replaces the text and keeps the one before in message_changes; the newest edit wins. A
-- revoke marks the message deleted and keeps its text. A reply job still pending reads the edited
-- text when it runs, and a revoked message's pending job is skipped; when the message was already
-- answered (or left for an operator) the AI does not answer again and the operators are told.
CREATE OR REPLACE FUNCTION waypost_apply_message_changes_v2(p_wa_message_id text) RETURNS integer
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_message messages%ROWTYPE;
    v_change record;
    v_applied integer := 0;
    v_pending boolean;
    v_handled boolean;
BEGIN
    SELECT m.* INTO v_message FROM messages m
     WHERE m.wa_message_id = p_wa_message_id AND m.type NOT IN ('edit', 'revoke')
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    FOR v_change IN
        SELECT c.id, c.kind, c.body_after, c.changed_at
          FROM message_changes c JOIN messages e ON e.id = c.event_message_id
         WHERE c.original_wa_message_id = p_wa_message_id AND c.message_id IS NULL
           AND e.conversation_id = v_message.conversation_id
           AND e.direction = v_message.direction  -- the contact changes their messages, the business its own
         ORDER BY c.changed_at, c.id
           FOR UPDATE OF c
    LOOP
        v_pending := EXISTS (SELECT 1 FROM outbound_jobs j
                              WHERE j.id = v_message.turn_id AND j.status IN ('gathering', 'pending'));
        v_handled := v_message.direction = 'inbound' AND NOT v_pending AND (
            v_message.turn_id IS NOT NULL
            OR EXISTS (SELECT 1 FROM messages o WHERE o.conversation_id = v_message.conversation_id
                                                  AND o.direction = 'outbound' AND o.id > v_message.id));
        UPDATE message_changes c
           SET message_id = v_message.id, body_before = v_message.body, applied_at = clock_timestamp()
         WHERE c.id = v_change.id;
        IF v_change.kind = 'edit' THEN
            IF v_message.edited_at IS NULL OR v_change.changed_at >= v_message.edited_at THEN
                UPDATE messages m SET body = v_change.body_after, edited_at = v_change.changed_at,
                                      updated_at = clock_timestamp()
                 WHERE m.id = v_message.id;
                IF v_handled THEN
                    INSERT INTO notifications (conversation_id, message_id, kind, body)
                    VALUES (v_message.conversation_id, v_message.id, 'message_edited',
                            'The contact edited a message that was already answered or left for an operator; '
                            || 'the AI does not answer it again. Before: "' || left(coalesce(v_message.body, ''), 300)
                            || '" Now: "' || left(coalesce(v_change.body_after, ''), 300) || '"');
                END IF;
                v_message.body := v_change.body_after;
                v_message.edited_at := v_change.changed_at;
            END IF;
        ELSE
            UPDATE messages m SET revoked_at = COALESCE(m.revoked_at, v_change.changed_at), updated_at = clock_timestamp()
             WHERE m.id = v_message.id;
            UPDATE outbound_jobs j
               SET status = 'skipped', skip_reason = 'the contact deleted the message',
                   closed_at = COALESCE(j.closed_at, clock_timestamp()),
                   finished_at = clock_timestamp(), updated_at = clock_timestamp()
             WHERE j.id = v_message.turn_id AND j.status IN ('gathering', 'pending')
               AND NOT EXISTS (SELECT 1 FROM messages o WHERE o.turn_id = j.id AND o.revoked_at IS NULL);
            IF v_handled THEN
                INSERT INTO notifications (conversation_id, message_id, kind, body)
                VALUES (v_message.conversation_id, v_message.id, 'message_deleted',
                        'The contact deleted a message that was already answered or left for an operator '
                        || '(its text stays visible in the inbox): "' || left(coalesce(v_message.body, ''), 300) || '"');
            END IF;
        END IF;
        v_applied := v_applied + 1;
    END LOOP;
    RETURN v_applied;
END;
$$;
