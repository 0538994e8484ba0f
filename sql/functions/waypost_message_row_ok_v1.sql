-- v1 (migration 0048, issue 17): messages' five CHECK constraints (0002's direction, author, status and
-- shape checks, 0016's source check) as one function, which the single CHECK messages_row_check calls.
-- PostgreSQL rebuilds a table's CHECK expressions from their stored node text at every INSERT and UPDATE
-- statement: the five (7.7 kB of it) cost about 45 us a statement (an INSERT of a message took 58 us
-- with them and 14 without), and a message's row is written about seven times (its insert, the reply's
-- insert, send and record, three statuses). The function is compiled once a session; the CHECK that
-- calls it is one call of six arguments (an INSERT: 22-25 us). Each condition counts as its own CHECK
-- did: only FALSE refuses a row (NULL passes, as it passes a CHECK).
CREATE OR REPLACE FUNCTION waypost_message_row_ok_v1(
    p_direction text,
    p_author text,
    p_status text,
    p_source text,
    p_has_wa_message_id boolean,
    p_has_idempotency_key boolean
) RETURNS boolean
    LANGUAGE plpgsql
    IMMUTABLE
    PARALLEL SAFE
AS $$
BEGIN
    RETURN (p_direction IN ('inbound', 'outbound')) IS NOT FALSE
       AND (p_author IN ('contact', 'ai', 'operator')) IS NOT FALSE
       AND (p_status IN ('received', 'sending', 'unknown', 'sent', 'delivered', 'read', 'played', 'failed'))
           IS NOT FALSE
       AND (p_source IN ('phone_app')) IS NOT FALSE
       AND ((p_direction = 'inbound' AND p_author = 'contact' AND p_has_wa_message_id
             AND NOT p_has_idempotency_key AND p_status = 'received')
            OR (p_direction = 'outbound' AND p_author IN ('ai', 'operator') AND p_has_idempotency_key
                AND p_status <> 'received')) IS NOT FALSE;
END;
$$;
