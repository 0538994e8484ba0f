-- The journal's ranged partitions and the time each covers, [lo, hi) (-infinity for MINVALUE):
-- the daily webhook_events_YYYYMMDD and, after an upgrade, webhook_events_legacy. The default
-- partition, which has no range, is not listed. Also for psql: SELECT * FROM waypost_journal_partition_bounds_v1();
CREATE OR REPLACE FUNCTION waypost_journal_partition_bounds_v1()
RETURNS TABLE (part regclass, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE
AS $fn$
SELECT c.oid::regclass,
       CASE WHEN m.b[1] = 'MINVALUE' THEN '-infinity'::timestamptz ELSE btrim(m.b[1], '''')::timestamptz END,
       CASE WHEN m.b[2] = 'MAXVALUE' THEN 'infinity'::timestamptz ELSE btrim(m.b[2], '''')::timestamptz END
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 CROSS JOIN LATERAL (SELECT regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \((.+)\) TO \((.+)\)') AS b) m
 WHERE i.inhparent = 'webhook_events'::regclass AND m.b IS NOT NULL
 ORDER BY 2
$fn$;
