-- Named queries of migration 0035_journal_partition_prepare (the journal, webhook_events, becomes a
-- partitioned table; README "Schema"). Each runs in a transaction of its own (the migration is not
-- transactional), none waits for the webhook's inserts and none holds them up longer than a catalog change.

-- journal_is_plain_table --
-- Whether webhook_events is still the plain table of 0002 (not yet partitioned): every step is a no-op otherwise
SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('webhook_events') AND relkind = 'r') AS plain

-- journal_prepare_bound --
-- The bound of the partition webhook_events_legacy will be: a CHECK (received_at < B), NOT VALID so
-- adding it is a catalog change (ACCESS EXCLUSIVE for an instant); B the UTC midnight at least 6 days
-- ahead (and past the latest row, should one be dated ahead), so the new rows written until the swap
-- meet it. One left unvalidated by an interrupted run is made again. A unique index left INVALID by an interrupted
-- CREATE INDEX CONCURRENTLY is dropped, to be built again
DO $$
BEGIN
    -- never queue the webhook's inserts for long behind a query holding the journal: fail, run again
    PERFORM set_config('lock_timeout', '10s', true);
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'webhook_events'::regclass
                                             AND conname = 'webhook_events_received_at_bound' AND NOT convalidated) THEN
        ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_received_at_bound;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'webhook_events'::regclass AND conname = 'webhook_events_received_at_bound') THEN
        EXECUTE format(
            'ALTER TABLE webhook_events ADD CONSTRAINT webhook_events_received_at_bound CHECK (received_at < %L) NOT VALID',
            date_trunc('day', greatest(now() + interval '7 days',
                                       (SELECT max(received_at) + interval '1 day' FROM webhook_events))
                              AT TIME ZONE 'UTC') AT TIME ZONE 'UTC');
    END IF;
    IF EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass('webhook_events_id_received_at_key')
                                        AND NOT indisvalid) THEN
        DROP INDEX webhook_events_id_received_at_key;
    END IF;
END
$$

-- journal_prepare_validate --
-- Checks the existing rows against the bound: a full scan, under SHARE UPDATE EXCLUSIVE only (the
-- webhook goes on inserting and updating), so the ATTACH of the swap needs no scan at all
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = 'webhook_events'::regclass
                                             AND conname = 'webhook_events_received_at_bound' AND NOT convalidated) THEN
        ALTER TABLE webhook_events VALIDATE CONSTRAINT webhook_events_received_at_bound;
    END IF;
END
$$

-- journal_prepare_unique_index --
-- The partitioned table's primary key must include the partition key: (id, received_at), built beside
-- the old key without blocking writes, then taken over by the swap
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS webhook_events_id_received_at_key ON webhook_events (id, received_at)

-- journal_unprepare --
-- Rollback of the prepare step on a plain webhook_events: the bound and the extra unique index go
DO $$
BEGIN
    ALTER TABLE webhook_events DROP CONSTRAINT IF EXISTS webhook_events_received_at_bound;
    DROP INDEX IF EXISTS webhook_events_id_received_at_key;
END
$$
