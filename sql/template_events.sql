-- Template events and the scheduled template sync (migration 0023_template_events; README "Schema").

-- template_event_insert --
-- One status, quality or category webhook about a template; nothing returned when Meta redelivers it
INSERT INTO template_events (waba_id, name, language, kind, previous, value, reason, event_key, occurred_at)
VALUES (%(waba_id)s, %(name)s, %(language)s, %(kind)s, %(previous)s, %(value)s, %(reason)s, %(event_key)s,
        %(occurred_at)s)
ON CONFLICT (event_key) DO NOTHING
RETURNING id

-- template_event_applied --
-- The event changed the template's row (it was not older than what the row holds)
UPDATE template_events SET applied = true WHERE id = %(id)s

-- template_lock --
-- The template's row, locked: events about one template apply one at a time, each seeing the last
SELECT id FROM message_templates WHERE name = %(name)s AND language = %(language)s FOR UPDATE

-- template_apply_quality --
-- A quality webhook: the template's quality, unless a sync or an applied quality event is newer.
-- The row's id when applied; nothing when older, or when no sync has stored the template yet
UPDATE message_templates t
   SET quality = %(value)s, template_id = coalesce(t.template_id, %(template_id)s)
 WHERE t.name = %(name)s AND t.language = %(language)s
   AND coalesce(t.synced_at, '-infinity') <= %(occurred_at)s
   AND NOT EXISTS (SELECT 1 FROM template_events e
                    WHERE e.name = t.name AND e.language = t.language AND e.kind = 'quality' AND e.applied
                      AND e.occurred_at > %(occurred_at)s)
RETURNING t.id

-- template_apply_category --
-- A completed category change: the template's category, unless a sync or an applied category event is newer
UPDATE message_templates t
   SET category = %(value)s, template_id = coalesce(t.template_id, %(template_id)s)
 WHERE t.name = %(name)s AND t.language = %(language)s
   AND coalesce(t.synced_at, '-infinity') <= %(occurred_at)s
   AND NOT EXISTS (SELECT 1 FROM template_events e
                    WHERE e.name = t.name AND e.language = t.language AND e.kind = 'category' AND e.applied
                      AND e.occurred_at > %(occurred_at)s)
RETURNING t.id

-- template_sync_claim --
-- The sweep's claim on syncing this account: taken when the last success is `every` seconds old or
-- more and no other claim is younger than `lease` seconds (two sweeps at once: one sync). A row when taken
INSERT INTO template_syncs (waba_id, started_at) VALUES (%(waba_id)s, now())
ON CONFLICT (waba_id) DO UPDATE SET started_at = now()
 WHERE (template_syncs.synced_at IS NULL OR template_syncs.synced_at <= now() - make_interval(secs => %(every)s))
   AND (template_syncs.started_at IS NULL
        OR template_syncs.started_at <= now() - make_interval(secs => %(lease)s))
RETURNING waba_id

-- template_sync_done --
-- A sync succeeded (the sweep's or `waypost templates sync`), in its transaction
INSERT INTO template_syncs (waba_id, synced_at) VALUES (%(waba_id)s, now())
ON CONFLICT (waba_id) DO UPDATE SET synced_at = now(), started_at = NULL, error = NULL, failures = 0

-- template_sync_failed --
-- A sweep's sync failed: its claim is released, so the next sweep tries again
UPDATE template_syncs SET started_at = NULL, failed_at = now(), error = %(error)s, failures = failures + 1
 WHERE waba_id = %(waba_id)s

-- templates_lock_account --
-- The account's templates as they were before a sync, locked until it commits (a webhook about one of
-- them waits, then finds the sync newer): what changed is what the sync tells the operators.
-- status_newer: the status was stored after the list was read (template_upsert keeps it)
SELECT name, language, status, quality, category,
       updated_at > date_trunc('second', %(read_at)s::timestamptz) - interval '1 second' AS status_newer
  FROM message_templates WHERE waba_id = %(waba_id)s ORDER BY name, language FOR UPDATE

-- template_category_pending_current --
-- Meta's notice of a recategorisation is news unless a sync or an applied category event is newer
SELECT t.id FROM message_templates t
 WHERE t.name = %(name)s AND t.language = %(language)s
   AND coalesce(t.synced_at, '-infinity') <= %(occurred_at)s
   AND NOT EXISTS (SELECT 1 FROM template_events e
                    WHERE e.name = t.name AND e.language = t.language AND e.kind = 'category' AND e.applied
                      AND e.occurred_at > %(occurred_at)s)
