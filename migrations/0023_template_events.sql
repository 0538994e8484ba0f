-- Template events (status, quality and category webhooks: one row each, a redelivery records nothing)
-- and the scheduled template sync's state (one row per WhatsApp Business Account). Re-runnable.
-- depends: 0021_templates_functions

CREATE TABLE IF NOT EXISTS template_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE template_events
    ADD COLUMN IF NOT EXISTS waba_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS name text NOT NULL,
    ADD COLUMN IF NOT EXISTS language text NOT NULL,
    -- status | quality | category | category_pending (Meta's notice of a recategorisation to come)
    ADD COLUMN IF NOT EXISTS kind text NOT NULL,
    ADD COLUMN IF NOT EXISTS previous text,
    ADD COLUMN IF NOT EXISTS value text NOT NULL,
    ADD COLUMN IF NOT EXISTS reason text,
    -- false: older than what the row holds (a late delivery), stored only as history
    ADD COLUMN IF NOT EXISTS applied boolean NOT NULL DEFAULT false,
    ADD COLUMN IF NOT EXISTS event_key text NOT NULL,
    ADD COLUMN IF NOT EXISTS occurred_at timestamptz NOT NULL,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS template_events_event_key_key ON template_events (event_key);
CREATE INDEX IF NOT EXISTS template_events_template_idx ON template_events (name, language, kind, occurred_at);

CREATE TABLE IF NOT EXISTS template_syncs (waba_id text PRIMARY KEY);
ALTER TABLE template_syncs
    -- a sweep's sync under way since then (the claim; NULL when none is)
    ADD COLUMN IF NOT EXISTS started_at timestamptz,
    -- the last sync that succeeded (the sweep's or `waypost templates sync`)
    ADD COLUMN IF NOT EXISTS synced_at timestamptz,
    ADD COLUMN IF NOT EXISTS failed_at timestamptz,
    ADD COLUMN IF NOT EXISTS error text,
    -- failed syncs since the last success
    ADD COLUMN IF NOT EXISTS failures integer NOT NULL DEFAULT 0;
