-- Keeps the journal's daily partitions (README "Schema", webhook_events), run by the sweep:
-- 1. creates webhook_events_YYYYMMDD for today and the p_days_ahead next days (UTC), where no
--    partition covers that day yet; rows the default partition took for such a day (its partition was
--    missing) move in first;
-- 2. with p_keep set, drops every partition wholly older than now - p_keep: a day goes whole, no row
--    by row delete, no dead tuples, next to no WAL;
-- 3. deletes the rows older than that, one by one, only from the default partition and from a
--    partition wider than a day that straddles the cutoff (webhook_events_legacy, the rows from before
--    the upgrade). A daily partition straddling the cutoff is kept whole until its last row is past:
--    trimming it row by row would cost the very WAL that dropping it saves, so a journal row lives
--    p_keep to p_keep + 1 day.
-- Two sweeps at once: the second finds the advisory lock taken and does nothing. Creating a
-- partition (CREATE TABLE, then ATTACH: SHARE UPDATE EXCLUSIVE on webhook_events, which inserts and
-- reads don't wait for) never blocks the webhook; dropping one takes ACCESS EXCLUSIVE on
-- webhook_events for a catalog change, so it waits at most lock_timeout behind a long query and is
-- otherwise left to the next sweep, rather than queue every webhook insert behind that query.
CREATE OR REPLACE FUNCTION waypost_journal_partitions_v1(p_keep interval, p_days_ahead integer)
RETURNS TABLE (partitions_created integer, partitions_dropped integer, rows_deleted bigint)
LANGUAGE plpgsql
SET lock_timeout = '500ms'
AS $fn$
DECLARE
    v_cutoff timestamptz := clock_timestamp() - p_keep;
    v_today date := (clock_timestamp() AT TIME ZONE 'UTC')::date;
    v_default regclass;
    v_day date;
    v_from timestamptz;
    v_to timestamptz;
    v_name text;
    v_n bigint;
    r record;
BEGIN
    partitions_created := 0;
    partitions_dropped := 0;
    rows_deleted := 0;
    IF NOT pg_try_advisory_xact_lock(hashtext('waypost'), hashtext('journal_partitions')) THEN
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT NULLIF(partdefid, 0)::regclass INTO v_default
      FROM pg_partitioned_table WHERE partrelid = 'webhook_events'::regclass;

    FOR v_day IN SELECT d::date FROM generate_series(v_today, v_today + p_days_ahead, interval '1 day') d LOOP
        v_from := v_day::timestamp AT TIME ZONE 'UTC';
        v_to := v_from + interval '1 day';
        v_name := 'webhook_events_' || to_char(v_day, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(v_name) IS NOT NULL
            OR EXISTS (SELECT 1 FROM waypost_journal_partition_bounds_v1() b WHERE b.lo < v_to AND b.hi > v_from);
        BEGIN
            EXECUTE format('CREATE TABLE %I (LIKE webhook_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', v_name);
            IF v_default IS NOT NULL THEN
                EXECUTE format(
                    'WITH moved AS (DELETE FROM %s WHERE received_at >= $1 AND received_at < $2 RETURNING *) '
                    'INSERT INTO %I SELECT * FROM moved', v_default, v_name) USING v_from, v_to;
            END IF;
            EXECUTE format('ALTER TABLE webhook_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                           v_name, v_from, v_to);
            partitions_created := partitions_created + 1;
        EXCEPTION WHEN lock_not_available OR check_violation THEN
            -- a long query held the default partition, or a row for that day reached it meanwhile:
            -- nothing was changed (the block's work is undone), the next sweep tries again
            RAISE NOTICE 'journal partition % not created this time: %', v_name, SQLERRM;
        END;
    END LOOP;

    IF p_keep IS NULL THEN
        RETURN NEXT;
        RETURN;
    END IF;
    FOR r IN
        SELECT b.part FROM waypost_journal_partition_bounds_v1() b
         WHERE b.lo < v_cutoff AND b.hi > v_cutoff AND b.lo < b.hi - interval '1 day'
        UNION ALL
        SELECT v_default WHERE v_default IS NOT NULL
    LOOP
        EXECUTE format('DELETE FROM %s WHERE received_at < $1', r.part) USING v_cutoff;
        GET DIAGNOSTICS v_n = ROW_COUNT;
        rows_deleted := rows_deleted + v_n;
    END LOOP;
    -- the drops last: each holds a lock the webhook's inserts wait for, until the caller commits
    FOR r IN SELECT b.part FROM waypost_journal_partition_bounds_v1() b WHERE b.hi <= v_cutoff LOOP
        BEGIN
            EXECUTE format('DROP TABLE %s', r.part);
            partitions_dropped := partitions_dropped + 1;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'journal partition % not dropped this time: %', r.part, SQLERRM;
        END;
    END LOOP;
    RETURN NEXT;
END
$fn$;
