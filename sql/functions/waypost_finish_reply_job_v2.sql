-- v2 (migration 0045, issue 17): v1's change, with the job found by its unique inbound message and
-- its status checked once the row is locked (FOR NO KEY UPDATE, as v1's UPDATE took: a foreign key's
-- FOR KEY SHARE does not wait for it). v1's one UPDATE ... FROM messages named the open
-- statuses beside the join, and on statistics that took the open jobs for a handful the planner
-- read the whole partial index of open jobs (outbound_jobs_open_idx, every job opened since its last
-- vacuum) instead of the one job: 1,865 entries for one row in a benchmark. Neither statement here
-- can use a partial index. v1's comment follows.
-- Marks done the outbound job whose AI reply is message `p_message_id`, once that reply is known sent.
-- (An operator's message never closes the AI's job.)
CREATE OR REPLACE FUNCTION waypost_finish_reply_job_v2(p_message_id bigint) RETURNS void
    LANGUAGE plpgsql
AS $$
DECLARE
    v_job_id bigint;
    v_status text;
BEGIN
    SELECT j.id, j.status INTO v_job_id, v_status
      FROM outbound_jobs j
     WHERE j.inbound_message_id = (
               SELECT m.reply_to_message_id FROM messages m
                WHERE m.id = p_message_id AND m.author = 'ai'
                  AND m.status IN ('sent', 'delivered', 'read', 'played'))
       FOR NO KEY UPDATE OF j;
    IF v_status IN ('pending', 'running') THEN
        UPDATE outbound_jobs
           SET status = 'done', last_error = NULL, finished_at = clock_timestamp(), updated_at = clock_timestamp()
         WHERE id = v_job_id;
    END IF;
END;
$$;
