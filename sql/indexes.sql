-- Named queries of the indexes that non-transactional migrations build CONCURRENTLY, so that writes
-- go on during the build (waypost.schema.build_index_concurrently: NAME_create, NAME_drop).

-- index_invalid --
-- Whether index %(name)s was left invalid by an interrupted CONCURRENTLY build
SELECT coalesce((SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%(name)s)), false)

-- procrastinate_jobs_lock_queue_idx_create --
-- A job's lock while it is todo or doing, NULL otherwise: the index of waypost_fetch_job_v1's lock
-- check. An expression no other index has, and not partial, so that no other index can serve that
-- check, whatever the statistics say (migration 0043)
CREATE INDEX CONCURRENTLY IF NOT EXISTS procrastinate_jobs_lock_queue_idx
    ON procrastinate_jobs ((CASE WHEN status IN ('todo', 'doing') THEN lock END))

-- procrastinate_jobs_lock_queue_idx_drop --
DROP INDEX CONCURRENTLY IF EXISTS procrastinate_jobs_lock_queue_idx

-- messages_sent_at_idx_create --
-- The budget's count (worker/budget.py): a number's messages sent this month (only outbound messages
-- have a sent_at). Neither partial nor led by `direction`, unlike the messages_outbound_sent_at_idx it
-- replaces (migration 0044): on statistics taken before any message was outbound, the planner read
-- that whole index to find one message by id (waypost_record_send_v1) or one conversation's replies
-- (waypost_start_reply_v2), and would read one led by direction the same way
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_sent_at_idx ON messages (sent_at)

-- messages_sent_at_idx_drop --
DROP INDEX CONCURRENTLY IF EXISTS messages_sent_at_idx

-- messages_outbound_sent_at_idx_create --
-- The index of migration 0019_pricing, put back by 0044's rollback
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_outbound_sent_at_idx ON messages (sent_at)
    WHERE direction = 'outbound'

-- messages_outbound_sent_at_idx_drop --
DROP INDEX CONCURRENTLY IF EXISTS messages_outbound_sent_at_idx
