-- v5 (migration 0040, issue 17): v4 with the contact's conversation found by
-- waypost_resolve_conversation_v2, whose lookup's plan does not depend on the table's statistics.
-- Same arguments and results as v4, whose comment follows.
-- v4 (migration 0037, issue 17): v3's rules, with the message and its turn's row each written once.
-- v3 inserted the message, then its turn's row, then updated the message's turn_id (a second write of
-- the new row: its eight indexes, a second inbox NOTIFY, its foreign keys checked again), and the
-- caller then linked the turn's row to its procrastinate job (a second write of that one). Here the
-- turn is decided first: an open turn joined as in v3, or a new turn's id taken from its sequence, the
-- message inserted with it, then the turn's row; messages_turn_id_fkey (DEFERRABLE since 0037) is
-- checked at commit for that transaction. With p_reply_task (the common webhook, no quiet window) the
-- reply is queued here, before the turn's row, with procrastinate's own procrastinate_defer_jobs_v1
-- (the row its Python `defer` writes: task, queue p_reply_queue, the conversation's lock, priority 0,
-- no queueing lock), and the row is written with its procrastinate_job_id: job_id returns it and
-- defer is false. Without (the general path), defer = true asks the caller to queue it, as in v3.
-- v3's comment follows.
-- v3: turns (migration 0031, README "Turns"). With a quiet window (p_quiet_window > 0) a message that
-- needs a reply joins its conversation's open turn (not closed, started less than p_max_wait ago),
-- re-arming the window; else it starts a turn, 'gathering' until due_at, announced on the channel
-- waypost_turns for the worker's turn clock. Without one, every message is its own turn, queued at
-- once by the caller (defer = true), as in v2.
-- v2 for contacts known by phone number, BSUID or both (waypost_resolve_conversation_v1), and for
-- the system messages that change those identifiers (p_new_wa_id / p_new_user_id).
-- Insert-or-ignore keyed by the Graph message id; created = false means nothing was written.
CREATE OR REPLACE FUNCTION waypost_ingest_inbound_message_v5(
    p_phone_number_id text,
    p_wa_id text,
    p_user_id text,
    p_parent_user_id text,
    p_username text,
    p_contact_name text,
    p_new_wa_id text,
    p_new_user_id text,
    p_wa_message_id text,
    p_type text,
    p_body text,
    p_payload jsonb,
    p_contact_sent_at timestamptz,
    p_needs_reply boolean,
    p_request_id text,
    p_quiet_window interval,
    p_max_wait interval,
    p_reply_task text,
    p_reply_queue text
) RETURNS TABLE (message_id bigint, conversation_id bigint, created boolean, outbound_job_id bigint,
                 defer boolean, job_id bigint)
    LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    v_conversation_id bigint;
    v_message_id bigint;
    v_job_id bigint;
    v_new_turn boolean := false;
    v_queued bigint;
BEGIN
    -- Redeliveries are the common duplicate: answer them without locking the conversation.
    SELECT m.id, m.conversation_id INTO v_message_id, v_conversation_id
      FROM messages m WHERE m.wa_message_id = p_wa_message_id;
    IF FOUND THEN
        RETURN QUERY SELECT v_message_id, v_conversation_id, false, NULL::bigint, false, NULL::bigint;
        RETURN;
    END IF;

    v_conversation_id := waypost_resolve_conversation_v2(
        p_phone_number_id, p_wa_id, p_user_id, p_parent_user_id, p_username, p_contact_name, p_contact_sent_at);

    IF p_needs_reply AND p_quiet_window > interval '0' THEN
        -- The conversation row is locked (waypost_resolve_conversation_v2): two messages of one
        -- conversation decide one after the other. The newest open turn's row lock orders this join
        -- with the reply's claim (turn_close, sql/turns.sql): joined before it, or a new turn after
        -- it. SKIP LOCKED: a turn someone holds this instant (being closed, released, swept) is not
        -- waited for: the message starts the next turn. Holding the conversation, this never waits
        -- for a job row, so it never deadlocks with work that holds a job and then the conversation.
        SELECT j.id INTO v_job_id
          FROM outbound_jobs j
         WHERE j.conversation_id = v_conversation_id AND j.closed_at IS NULL
           AND j.status IN ('gathering', 'pending', 'running') AND j.created_at > now() - p_max_wait
         ORDER BY j.id DESC
         LIMIT 1;
        IF v_job_id IS NOT NULL THEN
            PERFORM 1 FROM outbound_jobs j
             WHERE j.id = v_job_id AND j.closed_at IS NULL AND j.status IN ('gathering', 'pending', 'running')
               FOR UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                v_job_id := NULL;
            END IF;
        END IF;
    END IF;
    IF p_needs_reply AND v_job_id IS NULL THEN
        -- A new turn: its id taken now, so the message is written once, its turn_id in it; the turn's
        -- row (which names the message) follows, and the message's foreign key is checked at commit.
        v_job_id := nextval(pg_get_serial_sequence('outbound_jobs', 'id'));
        v_new_turn := true;
        SET CONSTRAINTS messages_turn_id_fkey DEFERRED;
    END IF;

    INSERT INTO messages AS m (conversation_id, direction, author, wa_message_id, type, body, payload,
                               status, contact_sent_at, turn_id)
    VALUES (v_conversation_id, 'inbound', 'contact', p_wa_message_id, p_type, p_body, p_payload,
            'received', p_contact_sent_at, v_job_id)
    ON CONFLICT (wa_message_id) DO NOTHING
    RETURNING m.id INTO v_message_id;
    IF v_message_id IS NULL THEN
        SELECT m.id, m.conversation_id INTO v_message_id, v_conversation_id
          FROM messages m WHERE m.wa_message_id = p_wa_message_id;
        RETURN QUERY SELECT v_message_id, v_conversation_id, false, NULL::bigint, false, NULL::bigint;
        RETURN;
    END IF;

    IF p_new_wa_id IS NOT NULL OR p_new_user_id IS NOT NULL THEN
        PERFORM waypost_change_contact_identifiers_v1(v_conversation_id, p_new_wa_id, p_new_user_id);
    END IF;
    IF NOT p_needs_reply THEN
        RETURN QUERY SELECT v_message_id, v_conversation_id, true, NULL::bigint, false, NULL::bigint;
        RETURN;
    END IF;
    IF NOT v_new_turn THEN
        UPDATE outbound_jobs j
           SET last_message_id = v_message_id, message_count = j.message_count + 1,
               due_at = least(now() + p_quiet_window, j.created_at + p_max_wait), updated_at = now()
         WHERE j.id = v_job_id;
        RETURN QUERY SELECT v_message_id, v_conversation_id, true, v_job_id, false, NULL::bigint;
        RETURN;
    END IF;
    IF p_quiet_window > interval '0' THEN
        INSERT INTO outbound_jobs AS j (id, inbound_message_id, conversation_id, request_id, status,
                                        last_message_id, due_at)
        OVERRIDING SYSTEM VALUE
        VALUES (v_job_id, v_message_id, v_conversation_id, p_request_id, 'gathering', v_message_id,
                now() + least(p_quiet_window, p_max_wait));
        PERFORM pg_notify('waypost_turns', '');
        RETURN QUERY SELECT v_message_id, v_conversation_id, true, v_job_id, false, NULL::bigint;
        RETURN;
    END IF;
    IF p_reply_task IS NOT NULL THEN
        v_queued := (procrastinate_defer_jobs_v1(ARRAY[ROW(
            p_reply_queue, p_reply_task, 0, 'conversation:' || v_conversation_id, NULL,
            jsonb_build_object('outbound_job_id', v_job_id, 'request_id', p_request_id),
            NULL)::procrastinate_job_to_defer_v1]))[1];
    END IF;
    INSERT INTO outbound_jobs AS j (id, inbound_message_id, conversation_id, request_id, last_message_id,
                                    procrastinate_job_id)
    OVERRIDING SYSTEM VALUE
    VALUES (v_job_id, v_message_id, v_conversation_id, p_request_id, v_message_id, v_queued);
    RETURN QUERY SELECT v_message_id, v_conversation_id, true, v_job_id, v_queued IS NULL, v_queued;
END;
$$;
