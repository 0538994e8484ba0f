-- v1 (migration 0043, issue 17): the worker's job fetch, with plans that do not depend on the table's
-- statistics. Same arguments, result and rules as procrastinate 3.10's procrastinate_fetch_job_v2: the
-- first todo job by (priority DESC, id ASC) among the given queues that is due, whose lock has no job
-- doing and no todo job ahead of it, claimed as 'doing' by p_worker_id; a row of NULLs when none is.
-- procrastinate_fetch_job_v2 checks the lock in one anti-join over its partial indexes. On statistics
-- taken while the queue was drained, those indexes all look empty and the planner may check each
-- candidate by reading every queued job (no `lock = jobs.lock` index condition; procrastinate issue
-- #1242): 9-11 ms a fetch against 0.5 ms, which held a whole benchmark phase at a fifth of its rate.
-- Here the check is one equality on procrastinate_jobs_lock_queue_idx (migration 0043), an index of an
-- expression no other index has, so no other index can serve it; and candidates are read in chunks
-- with a LIMIT, which the priority index serves in order whatever the queue's length looks like. A
-- candidate passed over because of its lock stays row-locked until the fetch's statement ends.
CREATE OR REPLACE FUNCTION waypost_fetch_job_v1(target_queue_names character varying[], p_worker_id bigint)
    RETURNS procrastinate_jobs
    LANGUAGE plpgsql
AS $$
DECLARE
    v_candidate record;
    v_locked record;
    v_found procrastinate_jobs;
    v_priority integer;
    v_id bigint;
    v_read integer;
BEGIN
    LOOP
        v_read := 0;
        FOR v_candidate IN
            SELECT jobs.id, jobs.priority
              FROM procrastinate_jobs AS jobs
             WHERE jobs.status = 'todo'
               AND (target_queue_names IS NULL OR jobs.queue_name = ANY (target_queue_names))
               AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())
               -- after the previous chunk's last candidate
               AND (v_id IS NULL OR jobs.priority < v_priority OR (jobs.priority = v_priority AND jobs.id > v_id))
             ORDER BY jobs.priority DESC, jobs.id ASC
             LIMIT 20
        LOOP
            v_read := v_read + 1;
            v_priority := v_candidate.priority;
            v_id := v_candidate.id;
            -- Locked, then checked, as procrastinate_fetch_job_v2 rechecks a row it locks: skipped if
            -- another fetch holds it; passed over if since it was read it was claimed, or sent back
            -- to another queue or a later time (a retry), its lock and priority read as they are now.
            -- Locked by id alone, so the primary key serves it: with `status = 'todo'` beside it, the
            -- priority index (partial on 'todo') could be read whole instead.
            SELECT jobs.id, jobs.lock, jobs.priority, jobs.status, jobs.queue_name, jobs.scheduled_at
              INTO v_locked
              FROM procrastinate_jobs AS jobs
             WHERE jobs.id = v_candidate.id
               FOR UPDATE SKIP LOCKED;
            CONTINUE WHEN NOT FOUND
                       OR v_locked.status <> 'todo'
                       OR NOT (target_queue_names IS NULL OR v_locked.queue_name = ANY (target_queue_names))
                       OR v_locked.scheduled_at > now();
            -- the lock has a job doing, or a todo job ahead of this one
            CONTINUE WHEN v_locked.lock IS NOT NULL AND EXISTS (
                SELECT 1 FROM procrastinate_jobs AS other
                 WHERE (CASE WHEN other.status IN ('todo', 'doing') THEN other.lock END) = v_locked.lock
                   AND (other.status = 'doing'
                        OR other.priority > v_locked.priority
                        OR (other.priority = v_locked.priority AND other.id < v_locked.id)));
            UPDATE procrastinate_jobs AS jobs
               SET status = 'doing', worker_id = p_worker_id
             WHERE jobs.id = v_locked.id
            RETURNING jobs.* INTO v_found;
            RETURN v_found;
        END LOOP;
        EXIT WHEN v_read < 20;
    END LOOP;
    RETURN v_found;
END;
$$;
