-- v1 (migration 0046, issue 17): up to `p_limit` jobs in one statement, each taken as
-- waypost_fetch_job_v1 takes one (its rules, and its comment says why its plans hold), in the order
-- that function gives them. A job taken is 'doing' for the next one's lock check, so two jobs of one
-- lock are never taken together. procrastinate's worker fetches one job per statement, one statement
-- at a time: a worker with free slots and a queue waiting filled them at one fetch's round trip each,
-- and kept only 2 or 3 of its 10 slots busy on a backlog (worker/resilience.py asks for as many jobs as
-- it has free slots).
CREATE OR REPLACE FUNCTION waypost_fetch_jobs_v1(target_queue_names character varying[], p_worker_id bigint,
                                                 p_limit integer)
    RETURNS SETOF procrastinate_jobs
    LANGUAGE plpgsql
AS $$
DECLARE
    v_job procrastinate_jobs;
BEGIN
    FOR i IN 1..p_limit LOOP
        v_job := waypost_fetch_job_v1(target_queue_names, p_worker_id);
        EXIT WHEN v_job.id IS NULL;
        RETURN NEXT v_job;
    END LOOP;
END;
$$;
