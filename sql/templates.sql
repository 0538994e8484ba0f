-- Message templates of the WhatsApp Business Account (migration 0021_templates; README "Schema").
-- What Waypost learns itself (a sync, a refused send) counts as of the second before it: Meta's
-- webhook times are whole seconds, so an event of the same second is taken as the newer one.

-- template_upsert --
-- One template as `waypost templates sync` read it from Meta: inserted, or its row brought up to date.
-- The list counts as of the second before the read began (read_at): a status stored since (a webhook
-- applied while the list was read or the row waited for its lock) is newer and stays, so a slow sync
-- never puts back a status Meta has already moved on from
WITH list AS (SELECT date_trunc('second', %(read_at)s::timestamptz) - interval '1 second' AS as_of)
INSERT INTO message_templates (template_id, waba_id, name, language, category, status, components,
                               body_params, header_params, button_params, quality, rejected_reason,
                               synced_at, updated_at)
SELECT %(template_id)s, %(waba_id)s, %(name)s, %(language)s, %(category)s, %(status)s, %(components)s,
       %(body_params)s, %(header_params)s, %(button_params)s, %(quality)s, %(rejected_reason)s,
       list.as_of, list.as_of
  FROM list
ON CONFLICT (name, language) DO UPDATE
   SET template_id = EXCLUDED.template_id, waba_id = EXCLUDED.waba_id, category = EXCLUDED.category,
       components = EXCLUDED.components, body_params = EXCLUDED.body_params,
       header_params = EXCLUDED.header_params, button_params = EXCLUDED.button_params,
       quality = EXCLUDED.quality,
       status = CASE WHEN message_templates.updated_at > EXCLUDED.updated_at
                     THEN message_templates.status ELSE EXCLUDED.status END,
       rejected_reason = CASE WHEN message_templates.updated_at > EXCLUDED.updated_at
                              THEN message_templates.rejected_reason ELSE EXCLUDED.rejected_reason END,
       synced_at = EXCLUDED.synced_at, updated_at = greatest(message_templates.updated_at, EXCLUDED.updated_at)

-- templates_mark_deleted --
-- Templates of the account that the sync just finished did not list: deleted at Meta. Not one stored
-- since the read began (a draft submitted, a webhook about a new template meanwhile): the list predates it
WITH list AS (SELECT date_trunc('second', %(read_at)s::timestamptz) - interval '1 second' AS as_of)
UPDATE message_templates
   SET status = 'DELETED', updated_at = list.as_of
  FROM list
 WHERE waba_id = %(waba_id)s AND status <> 'DELETED' AND NOT (name || '/' || language = ANY(%(listed)s))
   AND updated_at <= list.as_of
RETURNING name, language

-- template_apply_status --
-- A message_template_status_update webhook: the template's new status, unless a newer one is stored
-- (updated_at is when the status last changed; a template not synced yet gets a row the next sync
-- completes). Nothing returned when the event is older
INSERT INTO message_templates (template_id, waba_id, name, language, category, status, rejected_reason, updated_at)
VALUES (%(template_id)s, %(waba_id)s, %(name)s, %(language)s, %(category)s, %(status)s, %(reason)s, %(occurred_at)s)
ON CONFLICT (name, language) DO UPDATE
   SET status = EXCLUDED.status, template_id = coalesce(EXCLUDED.template_id, message_templates.template_id),
       category = coalesce(EXCLUDED.category, message_templates.category),
       rejected_reason = EXCLUDED.rejected_reason, updated_at = EXCLUDED.updated_at
 WHERE message_templates.updated_at <= EXCLUDED.updated_at
RETURNING id

-- templates_list --
-- Every template, for the command line and tests
SELECT id, template_id, waba_id, name, language, category, status, components, body_params, header_params,
       button_params, quality, rejected_reason, synced_at, updated_at
  FROM message_templates ORDER BY name, language

-- template_queue_operator_message --
-- Queue an operator's template message, inside or outside the 24-hour window (see the function)
SELECT message_id, outcome
  FROM waypost_queue_operator_message_v3(%(conversation_id)s, %(idempotency_key)s, 'template', %(body)s,
                                         %(payload)s, NULL, %(operator_id)s, %(pause_ai)s, interval '24 hours')

-- template_refused_by_meta --
-- Meta refused a send of a template held as APPROVED because it paused or disabled it (errors 132015,
-- 132016): the row says so until the next sync or status webhook, so the inbox stops offering it
UPDATE message_templates SET status = %(status)s, updated_at = date_trunc('second', now()) - interval '1 second'
 WHERE name = %(name)s AND language = %(language)s AND status = 'APPROVED'
RETURNING id
