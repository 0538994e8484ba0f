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

-- bench_journal_plain_create --
-- bench/journal_retention.py: the journal's layout before 0035 (one plain table, 0002 + 0011), to compare with
CREATE TABLE bench_journal_plain (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    body bytea,
    signature text NOT NULL CHECK (signature IN ('valid', 'missing', 'invalid', 'not_checked')),
    processed_at timestamptz,
    error text,
    body_size integer,
    body_sha256 bytea
);
CREATE INDEX bench_journal_plain_received_at_idx ON bench_journal_plain (received_at)

-- bench_journal_fill --
-- %(rows)s journal rows spread over the day starting %(day)s, ~1.4 KB bodies shaped like a status webhook,
-- into {table}: webhook_events or the plain layout's bench_journal_plain (waypost.db.composed fills it
-- in, which is why the JSON's braces are doubled)
INSERT INTO {table} (request_id, received_at, body, body_size, body_sha256, signature, processed_at)
SELECT 'bench-' || g, t, b, length(b), sha256(b), 'valid', t
  FROM generate_series(1, %(rows)s) g,
       LATERAL (SELECT %(day)s::timestamptz + (g - 0.5) * interval '1 day' / %(rows)s AS t) at_,
       LATERAL (SELECT convert_to('{{"object":"whatsapp_business_account","entry":[{{"id":"' || g
                || '","changes":[{{"field":"messages","value":{{"statuses":[{{"id":"wamid.'
                || repeat(md5(g::text || random()::text), 40) || '"}}]}}}}]}}]}}', 'UTF8') AS b) body_

-- bench_journal_insert_plain --
-- One POST's journal row in the plain layout (webhook_event_insert's shape)
INSERT INTO bench_journal_plain (request_id, body, body_size, body_sha256, signature, error)
VALUES (%(request_id)s, %(body)s, %(body_size)s, %(body_sha256)s, %(signature)s, %(error)s)
RETURNING id

-- bench_journal_processed_plain --
-- webhook_event_processed's shape on the plain layout
UPDATE bench_journal_plain SET processed_at = clock_timestamp(), error = %(error)s WHERE id = %(id)s

-- bench_journal_delete_plain --
-- Retention before 0035: the rows of the expired day deleted one by one
DELETE FROM bench_journal_plain WHERE received_at < %(cutoff)s

-- bench_journal_expire_partitioned --
-- Retention since 0035: the sweep's call, its cutoff at %(keep)s before now
SELECT partitions_created, partitions_dropped, rows_deleted FROM waypost_journal_partitions_v1(%(keep)s, 0)

-- bench_journal_make_days --
-- The daily partitions of today and the %(days)s next days (the benchmark's month starts today)
SELECT partitions_created FROM waypost_journal_partitions_v1(NULL, %(days)s)

-- bench_wal_lsn --
-- Where the WAL is now
SELECT pg_current_wal_lsn()::text AS lsn

-- bench_wal_since --
-- Bytes of WAL written since %(lsn)s
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(lsn)s::pg_lsn)::bigint AS bytes

-- bench_checkpoint --
-- A checkpoint, so each measured expiry starts alike (its first change to a page writes the whole page)
CHECKPOINT

-- bench_journal_sizes --
-- On-disk bytes of each layout (tables, indexes, TOAST), and its rows
SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('webhook_events'))::bigint AS partitioned,
       pg_total_relation_size('bench_journal_plain') AS plain,
       (SELECT count(*) FROM webhook_events) AS partitioned_rows,
       (SELECT count(*) FROM bench_journal_plain) AS plain_rows

-- bench_journal_insert_keyed --
-- webhook_event_insert returning the whole primary key, for bench_journal_processed_keyed
INSERT INTO webhook_events (request_id, body, body_size, body_sha256, signature, error)
VALUES (%(request_id)s, %(body)s, %(body_size)s, %(body_sha256)s, %(signature)s, %(error)s)
RETURNING id, received_at

-- bench_journal_processed_keyed --
-- webhook_event_processed naming the row's received_at too: the planner keeps to its one partition
UPDATE webhook_events SET processed_at = clock_timestamp(), error = %(error)s
 WHERE id = %(id)s AND received_at = %(received_at)s

-- bench_journal_vacuum --
-- Both layouts vacuumed and analysed after loading, as a month-old journal is, so no background
-- vacuum writes WAL during the measurements
VACUUM (FREEZE, ANALYZE) webhook_events, bench_journal_plain

-- bench_floor_create --
-- bench/durable_floor.py: the least a durable acknowledgement can write, one row that is at once the journal, the
-- message and its reply's job (its unique wamid the idempotency key), and a status webhook's row; its own tables,
-- outside Waypost's schema
CREATE TABLE IF NOT EXISTS bench_floor_inbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    wamid text NOT NULL UNIQUE,
    phone_number_id text NOT NULL,
    wa_id text NOT NULL,
    body text NOT NULL,
    status text NOT NULL DEFAULT 'new',
    reply_wamid text,
    delivery text,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS bench_floor_inbox_new_idx ON bench_floor_inbox (id) WHERE status = 'new';
CREATE INDEX IF NOT EXISTS bench_floor_inbox_reply_idx ON bench_floor_inbox (reply_wamid);
CREATE TABLE IF NOT EXISTS bench_floor_statuses (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reply_wamid text NOT NULL,
    status text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
)

-- bench_floor_store --
-- bench/durable_floor.py: the acknowledgement's one statement, committed before the 200; a redelivery stores
-- nothing and wakes nobody
WITH stored AS (
    INSERT INTO bench_floor_inbox (wamid, phone_number_id, wa_id, body)
    VALUES (%(wamid)s, %(phone_number_id)s, %(wa_id)s, %(body)s)
    ON CONFLICT (wamid) DO NOTHING
    RETURNING id
)
SELECT pg_notify('bench_floor', id::text) FROM stored

-- bench_floor_claim --
-- bench/durable_floor.py: the oldest message nobody answers yet, claimed before its reply is sent (at most once)
UPDATE bench_floor_inbox SET status = 'sending'
 WHERE id = (SELECT id FROM bench_floor_inbox WHERE status = 'new' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1)
RETURNING id, wamid, phone_number_id, wa_id

-- bench_floor_sent --
-- bench/durable_floor.py: the reply Meta accepted, recorded
UPDATE bench_floor_inbox SET status = 'sent', reply_wamid = %(reply_wamid)s WHERE id = %(id)s

-- bench_floor_open --
-- bench/durable_floor.py: whether a message still waits for its reply
SELECT 1 FROM bench_floor_inbox WHERE status <> 'sent' LIMIT 1

-- bench_floor_listen --
-- bench/durable_floor.py: the floor's worker is woken by each stored row (bench_floor_store's NOTIFY)
LISTEN bench_floor

-- bench_floor_listening --
-- bench/durable_floor.py: whether the floor's worker LISTENs yet (run without parameters)
SELECT 1 FROM pg_stat_activity WHERE query = 'LISTEN bench_floor' AND datname = current_database()

-- bench_floor_status --
-- bench/durable_floor.py: one status webhook's item, its one statement: the status row, and the reply's latest
WITH recorded AS (
    INSERT INTO bench_floor_statuses (reply_wamid, status) VALUES (%(reply_wamid)s, %(status)s)
)
UPDATE bench_floor_inbox SET delivery = %(status)s WHERE reply_wamid = %(reply_wamid)s

-- bench_resolve_v1 --
-- A contact's conversation found (or created) the way migrations 0007 to 0039 did (bench.contact_lookup)
SELECT waypost_resolve_conversation_v1('bench', %(wa_id)s, %(user_id)s, NULL, NULL, 'Bench', now()) AS id

-- bench_resolve_v2 --
-- A contact's conversation found (or created) as the webhook does since migration 0040 (bench.contact_lookup)
SELECT waypost_resolve_conversation_v2('bench', %(wa_id)s, %(user_id)s, NULL, NULL, 'Bench', now()) AS id

-- bench_analyze_conversations --
-- What autovacuum does about a minute after a young table's first rows (bench.contact_lookup)
ANALYZE conversations

-- bench_active_waits --
-- bench/waits.py: the client backends of this database running a statement now (except this one), by what
-- each waits on ('running': on a CPU, or waiting for one)
SELECT coalesce(wait_event_type || ':' || wait_event, 'running') AS state, count(*) AS backends
  FROM pg_stat_activity
 WHERE state = 'active' AND backend_type = 'client backend' AND datname = current_database()
   AND pid <> pg_backend_pid()
 GROUP BY 1
