-- Named queries of the benchmarks (bench/), loaded by name with waypost.sql.query("name"); the
-- runtime never runs them. The benchmarks tell their runs apart by the contact's wa_id prefix.

-- bench_outbound_open --
-- Whether any reply is still to be sent: the worker has not drained the queue yet
SELECT 1 FROM outbound_jobs WHERE status IN ('gathering', 'pending', 'running') LIMIT 1

-- bench_wake_ms --
-- Milliseconds from each webhook's commit to its reply job's start, for contacts whose wa_id starts with %(prefix)s
SELECT EXTRACT(EPOCH FROM j.started_at - e.processed_at) * 1000 AS ms
  FROM outbound_jobs j
  JOIN webhook_events e ON e.request_id = j.request_id
  JOIN conversations c ON c.id = j.conversation_id
 WHERE c.wa_id LIKE %(prefix)s || '%%' AND j.started_at IS NOT NULL

-- bench_reply_span --
-- Seconds from the first reply job's start to the last one's end, for contacts whose wa_id starts with %(prefix)s
SELECT EXTRACT(EPOCH FROM max(j.finished_at) - min(j.started_at)) AS seconds
  FROM outbound_jobs j
  JOIN conversations c ON c.id = j.conversation_id
 WHERE c.wa_id LIKE %(prefix)s || '%%'

-- bench_noop_open --
-- Whether procrastinate's own no-op jobs are still running
SELECT 1 FROM procrastinate_jobs WHERE queue_name = 'bench_noop' AND status <> 'succeeded' LIMIT 1

-- bench_noop_span --
-- Seconds from the first no-op job's start to the last one's success
SELECT EXTRACT(EPOCH FROM max(e.at) FILTER (WHERE e.type = 'succeeded')
                        - min(e.at) FILTER (WHERE e.type = 'started')) AS seconds
  FROM procrastinate_events e
  JOIN procrastinate_jobs j ON j.id = e.job_id
 WHERE j.queue_name = 'bench_noop'

-- bench_log_every_statement --
-- bench/replies.py profile: the bench's own embedded server logs every statement with its backend pid
ALTER SYSTEM SET log_min_duration_statement = 0

-- bench_log_line_prefix --
-- bench/replies.py profile: each log line starts with its time and backend pid
ALTER SYSTEM SET log_line_prefix = '%%m [%%p] '

-- bench_reload_conf --
-- bench/replies.py profile: the settings above take effect
SELECT pg_reload_conf()

-- bench_data_directory --
-- bench/replies.py profile: where the embedded server writes its log (`log` in its data directory)
SELECT current_setting('data_directory') AS data_directory

-- bench_connections --
-- Client connections to this database now, other than the one asking (web and worker pools, the LISTEN connections)
SELECT count(*) AS connections, current_setting('max_connections')::int AS max_connections
  FROM pg_stat_activity
 WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
