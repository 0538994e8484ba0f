-- v1 (issue 17): a reply run's start, made by the worker's fetch in the statement that takes the job
-- (sql/queries.sql `fetch_jobs_and_backlog`), where the run made it in a round trip and a commit of its
-- own: the rows sql/turns.sql `reply_start` gives for the outbound job in the job's `p_args`
-- (waypost_start_reply_v2's, and whether the knowledge base holds a passage), as a JSON array in their
-- order ('[]': the job is not open). NULL when the start raised: its block is undone (the outbound job
-- is left as it was), the fetch goes on, and the run starts on its own and meets the error where a run's
-- errors are handled. A fetch that a start could make fail would leave the job due, to fail every fetch
-- after it.
CREATE OR REPLACE FUNCTION waypost_try_start_reply_v1(p_args jsonb, p_key_prefix text,
                                                      p_count_ai_replies boolean, p_history_limit integer)
    RETURNS jsonb
    LANGUAGE plpgsql
AS $$
BEGIN
    RETURN (SELECT COALESCE(jsonb_agg(to_jsonb(s) || jsonb_build_object('knowledge_base', kb.found)
                                      ORDER BY s.message_id NULLS FIRST), '[]'::jsonb)
              FROM waypost_start_reply_v2((p_args ->> 'outbound_job_id')::bigint, p_key_prefix,
                                          p_count_ai_replies, p_history_limit) s
              CROSS JOIN (SELECT EXISTS (SELECT 1 FROM kb_passages) AS found) kb);
EXCEPTION WHEN OTHERS THEN
    RETURN NULL;
END;
$$;
