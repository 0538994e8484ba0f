-- v1 (issue 17): a reply run's start, made by the worker's fetch in the statement that takes the job
-- (sql/queries.sql `fetch_jobs_and_backlog`), where the run made it in a round trip and a commit of its
-- own: the rows sql/turns.sql `reply_start` gives for the outbound job in the job's `p_args`
-- (waypost_start_reply_v2's, and whether the knowledge base holds a passage), as a JSON array in their
-- order ('[]': the job is not open). NULL, and the run starts on its own (meeting there what stopped it
-- here), when the outbound job's row is locked (the fetch, which takes several jobs at once and holds
-- every slot until it ends, never waits on one job's row) or when the start raised: its block is undone,
-- the outbound job left as it was, and the fetch goes on. A fetch that a start could make fail would leave
-- the job due, to fail every fetch after it; hence query_canceled too (a statement_timeout reached here).
CREATE OR REPLACE FUNCTION waypost_try_start_reply_v1(p_args jsonb, p_key_prefix text,
                                                      p_count_ai_replies boolean, p_history_limit integer)
    RETURNS jsonb
    LANGUAGE plpgsql
AS $$
DECLARE
    v_id bigint;
BEGIN
    v_id := (p_args ->> 'outbound_job_id')::bigint;
    PERFORM 1 FROM outbound_jobs j WHERE j.id = v_id FOR NO KEY UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;  -- locked (or gone: the run finds it not open)
    END IF;
    RETURN (SELECT COALESCE(jsonb_agg(to_jsonb(s) || jsonb_build_object('knowledge_base', kb.found)
                                      ORDER BY s.message_id NULLS FIRST), '[]'::jsonb)
              FROM waypost_start_reply_v2(v_id, p_key_prefix, p_count_ai_replies, p_history_limit) s
              CROSS JOIN (SELECT EXISTS (SELECT 1 FROM kb_passages) AS found) kb);
EXCEPTION WHEN OTHERS OR query_canceled THEN
    RETURN NULL;
END;
$$;
