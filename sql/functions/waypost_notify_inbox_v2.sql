-- v2 (migration 0041, issue 17): v1's notification, without turning the whole row into jsonb to read
-- one column. v1's `to_jsonb(NEW) ->> TG_ARGV[0]` converted every column (a message's payload and
-- body included) for each of the seven or so rows a message's life writes: 43-56 µs a trigger call
-- against 26-31 here. PL/pgSQL plans a statement when it first runs, so the branch not taken never
-- names a column its table lacks (conversations have no conversation_id). v1's comment follows.
-- Live inbox: every change to a conversation, message or notification is announced on the
-- 'waypost_inbox' channel as {"table", "op", "id", "conversation_id"}. The argument names the
-- column holding the conversation id: `id` (conversations) or `conversation_id` (the others).
CREATE OR REPLACE FUNCTION waypost_notify_inbox_v2() RETURNS trigger
    LANGUAGE plpgsql
AS $$
DECLARE
    v_conversation_id bigint;
BEGIN
    IF TG_ARGV[0] = 'id' THEN
        v_conversation_id := NEW.id;
    ELSE
        v_conversation_id := NEW.conversation_id;
    END IF;
    PERFORM pg_notify('waypost_inbox', json_build_object(
        'table', TG_TABLE_NAME,
        'op', lower(TG_OP),
        'id', NEW.id,
        'conversation_id', v_conversation_id)::text);
    RETURN NULL;
END;
$$;
