-- The journal (webhook_events) becomes a table partitioned by RANGE (received_at), one partition per
-- UTC day (webhook_events_YYYYMMDD, made ahead by waypost_journal_partitions_v1 from the sweep) and a
-- DEFAULT partition, so that retention drops a day whole instead of deleting ~27 million rows a day
-- one by one (README "Schema"). Same name, columns and meaning: psql users still read webhook_events.
--
-- Daily: the sweep drops a day once all of it is past WAYPOST_RETENTION_DAYS, so a row lives up to a
-- day longer than the setting (an hour would mean 720+ partitions, and every query not naming a
-- received_at, such as an UPDATE by id, plans over all of them; a month would keep up to twice the
-- retention on disk).
--
-- No row is copied. The old table is renamed webhook_events_legacy and attached as the partition of
-- everything before its bound B (the UTC midnight >= 6 days after the prepare step: a swap that failed on its lock timeout has days to be run again before the CHECK refuses new rows); rows before B keep
-- going there, the daily partitions start at B. 0035_journal_partition_prepare did the two scans
-- this needs, without blocking writes: the CHECK (received_at < B) that proves the partition's bound
-- (so ATTACH scans nothing), and the unique index on (id, received_at) that becomes its primary key.
-- Locks: the RENAME takes ACCESS EXCLUSIVE on the old table until commit; everything after it here
-- is a catalog change (no scan, no index build, no rewrite), so the webhook's inserts wait a few
-- milliseconds. lock_timeout bounds the wait for that lock behind a long query on the journal: the
-- migration then fails, nothing changed, and is run again.
-- The legacy partition's old rows are deleted by the sweep as before, until all of it is past the
-- retention: then it is dropped whole like a day. An empty old table (a new install) is dropped
-- instead. id stays an identity, continuing from the old sequence; the primary key is now
-- (id, received_at), id alone stays unique (one sequence). Re-runnable: a no-op once partitioned,
-- except that a missing default partition is made again.
-- depends: 0035_journal_partition_prepare

SET LOCAL lock_timeout = '10s';

DO $$
DECLARE
    v_bound timestamptz;
    v_next bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('webhook_events') AND relkind = 'r') THEN
        RETURN;
    END IF;
    ALTER TABLE webhook_events RENAME TO webhook_events_legacy;
    v_next := nextval(pg_get_serial_sequence('webhook_events_legacy', 'id'));
    IF NOT EXISTS (SELECT 1 FROM webhook_events_legacy) THEN
        DROP TABLE webhook_events_legacy;
    ELSE
        SELECT substring(pg_get_constraintdef(oid) FROM '''([^'']+)''')::timestamptz INTO v_bound
          FROM pg_constraint
         WHERE conrelid = 'webhook_events_legacy'::regclass AND conname = 'webhook_events_received_at_bound'
           AND convalidated;
        IF v_bound IS NULL OR to_regclass('webhook_events_id_received_at_key') IS NULL THEN
            RAISE EXCEPTION 'webhook_events is not prepared: run 0035_journal_partition_prepare first';
        END IF;
        ALTER TABLE webhook_events_legacy ALTER COLUMN id DROP IDENTITY;
        ALTER INDEX webhook_events_received_at_idx RENAME TO webhook_events_legacy_received_at_idx;
        ALTER TABLE webhook_events_legacy
            DROP CONSTRAINT webhook_events_pkey,
            ADD CONSTRAINT webhook_events_legacy_pkey PRIMARY KEY USING INDEX webhook_events_id_received_at_key;
    END IF;
    EXECUTE format($sql$
        CREATE TABLE webhook_events (
            id bigint GENERATED ALWAYS AS IDENTITY (START WITH %s),
            request_id text NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            body bytea,
            signature text NOT NULL CONSTRAINT webhook_events_signature_check
                CHECK (signature IN ('valid', 'missing', 'invalid', 'not_checked')),
            processed_at timestamptz,
            error text,
            body_size integer,
            body_sha256 bytea,
            CONSTRAINT webhook_events_pkey PRIMARY KEY (id, received_at)
        ) PARTITION BY RANGE (received_at)$sql$, v_next);
    IF v_bound IS NOT NULL THEN
        EXECUTE format('ALTER TABLE webhook_events ATTACH PARTITION webhook_events_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
                       v_bound);
        -- the partition's bound now says the same, and lets rows up to B in
        ALTER TABLE webhook_events_legacy DROP CONSTRAINT webhook_events_received_at_bound;
    END IF;
    -- on the legacy partition, takes over its existing index: no build
    CREATE INDEX webhook_events_received_at_idx ON webhook_events (received_at);
END
$$;

-- A row is never refused for want of a partition (the sweep stopped for days, a clock far off):
-- it lands here, and the sweep moves it into its day's partition when it makes one, or expires it.
CREATE TABLE IF NOT EXISTS webhook_events_default PARTITION OF webhook_events DEFAULT;
