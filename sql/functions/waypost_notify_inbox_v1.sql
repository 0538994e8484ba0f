-- Live inbox: every change to a conversation, message or notification is announced on the
-- 'waypost_inbox' channel as {"table", "op", "id", "conversation_id"}. The argument names the
-- column holding the conversation id.
CREATE OR REPLACE FUNCTION waypost_notify_inbox_v1() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('waypost_inbox', json_build_object(
        'table', TG_TABLE_NAME,
        'op', lower(TG_OP),
        'id', NEW.id,
        'conversation_id', (to_jsonb(NEW) ->> TG_ARGV[0])::bigint)::text);
    RETURN NULL;
END;
$$;
