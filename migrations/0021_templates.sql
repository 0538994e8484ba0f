-- Message templates of the WhatsApp Business Account (`waypost templates sync`, and the
-- message_template_status_update webhooks). Re-runnable.
-- depends: 0020_erasure_functions

CREATE TABLE IF NOT EXISTS message_templates (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE message_templates
    -- Meta's template id (the webhook names it as message_template_id)
    ADD COLUMN IF NOT EXISTS template_id text,
    ADD COLUMN IF NOT EXISTS waba_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS name text NOT NULL,
    ADD COLUMN IF NOT EXISTS language text NOT NULL,
    ADD COLUMN IF NOT EXISTS category text,
    -- APPROVED, PENDING, REJECTED, PAUSED, DISABLED…; DELETED once a sync no longer lists it
    ADD COLUMN IF NOT EXISTS status text NOT NULL,
    ADD COLUMN IF NOT EXISTS components jsonb NOT NULL DEFAULT '[]',
    -- how many {{n}} parameters the body, the header and the buttons need
    ADD COLUMN IF NOT EXISTS body_params integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS header_params integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS button_params integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS quality text,
    ADD COLUMN IF NOT EXISTS rejected_reason text,
    ADD COLUMN IF NOT EXISTS synced_at timestamptz,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS message_templates_name_language_key ON message_templates (name, language);
