-- Templates drafted in the inbox and submitted to Meta (migration 0024_template_drafts; README "Schema").

-- template_draft_insert --
-- A new draft, or nothing when its client_key was stored already (a resubmitted form) or a draft of
-- that name and language is on its way to Meta (template_drafts_in_flight_key): the caller tells which
INSERT INTO template_drafts (client_key, operator_id, waba_id, name, language, category, request, request_id)
VALUES (%(client_key)s, %(operator_id)s, %(waba_id)s, %(name)s, %(language)s, %(category)s, %(request)s,
        %(request_id)s)
ON CONFLICT DO NOTHING
RETURNING id

-- template_draft_by_key --
SELECT id, name, language FROM template_drafts WHERE client_key = %(client_key)s

-- template_name_taken --
-- Why a new template of this name and language would be refused, or nothing: Meta lists one already (any
-- status but DELETED). A draft of it on its way to Meta is found by template_draft_insert's conflict
-- instead, which also tells it from the same form's draft committed since the caller's key lookup.
SELECT status FROM message_templates
 WHERE name = %(name)s AND language = %(language)s AND status <> 'DELETED'
LIMIT 1

-- template_draft --
-- One draft as the inbox shows it, with the status of the template it became
SELECT d.id, d.waba_id, d.name, d.language, d.category, d.status, d.attempts, d.template_id, d.meta_status,
       d.error, d.created_at, d.finished_at, d.request, o.email AS operator_email,
       t.status AS template_status, t.rejected_reason
  FROM template_drafts d
  LEFT JOIN operators o ON o.id = d.operator_id
  LEFT JOIN message_templates t ON t.name = d.name AND t.language = d.language AND d.status = 'submitted'
 WHERE d.id = %(draft_id)s

-- template_drafts_recent --
-- The latest drafts, newest first, for the inbox's templates page
SELECT d.id, d.name, d.language, d.category, d.status, d.attempts, d.template_id, d.meta_status, d.error,
       d.created_at, d.finished_at, o.email AS operator_email,
       t.status AS template_status, t.rejected_reason
  FROM template_drafts d
  LEFT JOIN operators o ON o.id = d.operator_id
  LEFT JOIN message_templates t ON t.name = d.name AND t.language = d.language AND d.status = 'submitted'
 ORDER BY d.id DESC
 LIMIT %(limit)s

-- template_drafts_templates --
-- The account's templates with their status, for the inbox's templates page
SELECT name, language, category, status, rejected_reason, quality, body_params, updated_at
  FROM message_templates
 WHERE status <> 'DELETED'
 ORDER BY name, language

-- template_draft_claim --
-- The submit task takes its draft: counts the attempt and stamps the first time Meta is asked.
-- Nothing when the draft was submitted or refused already (a retry after the answer was stored)
UPDATE template_drafts
   SET status = 'submitting', attempts = attempts + 1, asked_at = coalesce(asked_at, now())
 WHERE id = %(draft_id)s AND status IN ('queued', 'submitting')
RETURNING id, waba_id, name, language, category, request, attempts, asked_at, request_id

-- template_draft_submitted --
-- Meta took the template (or has it already): the draft records Meta's id and answer
UPDATE template_drafts
   SET status = 'submitted', template_id = %(template_id)s, meta_status = %(meta_status)s, error = NULL,
       finished_at = now()
 WHERE id = %(draft_id)s AND status = 'submitting'
RETURNING id

-- template_draft_refused --
-- Meta refused the template (or it could not be reached, attempts spent): shown on the page
UPDATE template_drafts
   SET status = 'refused', error = %(error)s, finished_at = now()
 WHERE id = %(draft_id)s AND status IN ('queued', 'submitting')
RETURNING id

-- template_draft_note --
-- A transient failure, kept for the page while the task retries
UPDATE template_drafts SET error = %(error)s WHERE id = %(draft_id)s

-- template_submitted_upsert --
-- The submitted template's row in message_templates, the one message_template_status_update webhooks
-- (keyed on name and language) update. Meta's answer counts as of the second before it was first asked
-- (webhook times are whole seconds): a status event from then on, stored already (an approval can beat
-- the answer here) or delivered later, is newer and wins
WITH answer AS (SELECT date_trunc('second', %(asked_at)s::timestamptz) - interval '1 second' AS as_of)
INSERT INTO message_templates (template_id, waba_id, name, language, category, status, components,
                               body_params, header_params, button_params, updated_at)
SELECT %(template_id)s, %(waba_id)s, %(name)s, %(language)s, %(category)s, %(status)s, %(components)s,
       %(body_params)s, %(header_params)s, %(button_params)s, answer.as_of
  FROM answer
ON CONFLICT (name, language) DO UPDATE
   SET template_id = EXCLUDED.template_id, waba_id = EXCLUDED.waba_id,
       category = coalesce(EXCLUDED.category, message_templates.category),
       components = EXCLUDED.components, body_params = EXCLUDED.body_params,
       header_params = EXCLUDED.header_params, button_params = EXCLUDED.button_params,
       status = CASE WHEN message_templates.updated_at >= EXCLUDED.updated_at
                     THEN message_templates.status ELSE EXCLUDED.status END,
       rejected_reason = CASE WHEN message_templates.updated_at >= EXCLUDED.updated_at
                              THEN message_templates.rejected_reason END,
       updated_at = greatest(message_templates.updated_at, EXCLUDED.updated_at)
RETURNING status

-- sweep_orphan_template_drafts --
-- Drafts still to submit whose submit_template job is gone (lost, or failed on an error nobody
-- classified before the draft was refused): the sweep queues them again. Their own attempt count
-- bounds the retries, and a retry reads back what Meta has rather than submitting twice.
SELECT d.id, d.request_id
  FROM template_drafts d
 WHERE d.status IN ('queued', 'submitting')
   AND d.created_at < clock_timestamp() - make_interval(secs => %(min_age)s)
   AND NOT EXISTS (
        SELECT 1 FROM procrastinate_jobs q
         WHERE q.task_name = 'submit_template' AND q.status IN ('todo', 'doing')
           AND q.args ->> 'draft_id' = d.id::text)
 ORDER BY d.id
 LIMIT 100
   FOR UPDATE OF d SKIP LOCKED
