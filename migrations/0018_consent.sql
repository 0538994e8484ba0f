-- Consent: a contact's marketing opt-out and opt-in (an opt-out word, Meta's user_preferences
-- webhook) and the operators' blocks through Meta's block-users API. Re-runnable, like 0002.
-- Events, not a state column: a contact is named by a phone number, a BSUID or both, and its
-- conversations may be deleted and started anew; the latest event of each pair decides.
-- depends: 0017_outbound_media

CREATE TABLE IF NOT EXISTS consent_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE consent_events
    ADD COLUMN IF NOT EXISTS phone_number_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS wa_id text,
    ADD COLUMN IF NOT EXISTS user_id text,
    ADD COLUMN IF NOT EXISTS conversation_id bigint REFERENCES conversations (id) ON DELETE CASCADE,
    ADD COLUMN IF NOT EXISTS kind text NOT NULL
        CONSTRAINT consent_events_kind_check CHECK (kind IN ('opt_out', 'opt_in', 'block', 'unblock')),
    ADD COLUMN IF NOT EXISTS source text NOT NULL
        CONSTRAINT consent_events_source_check CHECK (source IN ('keyword', 'user_preferences', 'operator')),
    -- the contact's message that was the opt-out or opt-in word (source 'keyword')
    ADD COLUMN IF NOT EXISTS message_id bigint REFERENCES messages (id) ON DELETE CASCADE,
    -- who blocked or unblocked (source 'operator')
    ADD COLUMN IF NOT EXISTS operator_id bigint REFERENCES operators (id) ON DELETE SET NULL,
    -- one row per event however often it is delivered: 'message:<wamid>',
    -- 'user_preferences:<phone_number_id>:<contact>:<value>:<timestamp>', 'block_request:<id>'
    ADD COLUMN IF NOT EXISTS event_key text NOT NULL,
    -- when it happened (the message's or the webhook's timestamp; the block's answer)
    ADD COLUMN IF NOT EXISTS occurred_at timestamptz NOT NULL,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS consent_events_event_key_key ON consent_events (event_key);
CREATE INDEX IF NOT EXISTS consent_events_wa_id_idx
    ON consent_events (phone_number_id, wa_id, occurred_at) WHERE wa_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS consent_events_user_id_idx
    ON consent_events (phone_number_id, user_id, occurred_at) WHERE user_id IS NOT NULL;

-- An operator's block or unblock, sent to Meta by the `change_block` task: pending until Meta
-- answers, then done (a consent_events row records it) or failed with Meta's error.
CREATE TABLE IF NOT EXISTS block_requests (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE block_requests
    ADD COLUMN IF NOT EXISTS conversation_id bigint NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    ADD COLUMN IF NOT EXISTS action text NOT NULL
        CONSTRAINT block_requests_action_check CHECK (action IN ('block', 'unblock')),
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'pending'
        CONSTRAINT block_requests_status_check CHECK (status IN ('pending', 'done', 'failed')),
    ADD COLUMN IF NOT EXISTS error jsonb,
    ADD COLUMN IF NOT EXISTS operator_id bigint REFERENCES operators (id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS request_id text,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS finished_at timestamptz;
CREATE INDEX IF NOT EXISTS block_requests_conversation_idx ON block_requests (conversation_id, id);
