-- Templates drafted by operators in the inbox and submitted to Meta for approval by the worker's
-- `submit_template` task (README "Message templates"). Re-runnable, like 0002.
-- depends: 0023_template_events

CREATE TABLE IF NOT EXISTS template_drafts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE template_drafts
    -- the draft form's key (or the API caller's): a resubmitted form stores and submits one draft
    ADD COLUMN IF NOT EXISTS client_key text NOT NULL,
    ADD COLUMN IF NOT EXISTS operator_id bigint REFERENCES operators (id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS waba_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS name text NOT NULL,
    ADD COLUMN IF NOT EXISTS language text NOT NULL,
    ADD COLUMN IF NOT EXISTS category text NOT NULL,
    -- the body POSTed to /{waba-id}/message_templates, exactly (a retry sends the same one)
    ADD COLUMN IF NOT EXISTS request jsonb NOT NULL,
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'queued'
        CONSTRAINT template_drafts_status_check CHECK (status IN ('queued', 'submitting', 'submitted', 'refused')),
    -- runs of the task that reached the point of asking Meta
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
    -- when Meta was first asked: a status webhook from then on is newer than Meta's first answer
    ADD COLUMN IF NOT EXISTS asked_at timestamptz,
    ADD COLUMN IF NOT EXISTS template_id text,
    -- the status Meta answered the creation with (PENDING, APPROVED, REJECTED)
    ADD COLUMN IF NOT EXISTS meta_status text,
    -- Meta's refusal ({code, error_subcode, message, error_user_title, error_user_msg}) or ours
    ADD COLUMN IF NOT EXISTS error jsonb,
    ADD COLUMN IF NOT EXISTS request_id text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS finished_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS template_drafts_client_key_key ON template_drafts (client_key);
-- one draft of a name and language on its way to Meta at a time
CREATE UNIQUE INDEX IF NOT EXISTS template_drafts_in_flight_key
    ON template_drafts (name, language) WHERE status IN ('queued', 'submitting');
