-- v1 (migration 0042, issue 17): several webhooks stored in one statement, one transaction and one
-- commit (webhook/group_commit.py: POSTs that arrive while the web process's webhook statements are
-- all busy wait, and go together). Each is stored exactly as one call of waypost_store_webhook_v3 would
-- store it, in the order given (the caller sorts them so that concurrent groups lock in one order), and
-- is answered only after the commit: nothing is acknowledged before its journal row, its messages and
-- its jobs are committed. event_number: the webhook's index in the arrays, from 1. If any of them fails,
-- nothing of any is written, and the caller stores each on its own.
CREATE OR REPLACE FUNCTION waypost_store_webhooks_v1(
    p_request_ids text[],
    p_bodies bytea[],
    p_body_sha256s bytea[],
    p_signatures text[],
    p_messages jsonb[],
    p_statuses jsonb[],
    p_quiet_window interval,
    p_max_wait interval,
    p_reply_task text,
    p_reply_queue text
) RETURNS TABLE (event_number integer, event_id bigint, new_messages integer, duplicate_messages integer,
                 job_ids bigint[], outbound_job_ids bigint[], status_outcomes text[])
    LANGUAGE plpgsql
AS $$
DECLARE
    v_i integer;
BEGIN
    FOR v_i IN 1 .. coalesce(array_length(p_request_ids, 1), 0) LOOP
        RETURN QUERY
            SELECT v_i, s.event_id, s.new_messages, s.duplicate_messages, s.job_ids, s.outbound_job_ids,
                   s.status_outcomes
              FROM waypost_store_webhook_v3(
                  p_request_ids[v_i], p_bodies[v_i], p_body_sha256s[v_i], p_signatures[v_i], p_messages[v_i],
                  p_statuses[v_i], p_quiet_window, p_max_wait, p_reply_task, p_reply_queue) AS s;
    END LOOP;
END;
$$;
