-- Waypost's tables. Table and column names are a public interface (README, "Schema").
-- Written re-runnably (IF NOT EXISTS everywhere, constraints attached to their columns) so that
-- `waypost migrate` can put back an object that drifted away after this migration was recorded.
-- depends: 0001_procrastinate_3.10.0_schema

CREATE TABLE IF NOT EXISTS conversations (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE conversations
    ADD COLUMN IF NOT EXISTS phone_number_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS wa_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS contact_name text,
    ADD COLUMN IF NOT EXISTS ai_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN IF NOT EXISTS last_inbound_at timestamptz,
    ADD COLUMN IF NOT EXISTS deleted_at timestamptz,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
-- One live conversation per business number and contact; a soft-deleted one frees the slot.
CREATE UNIQUE INDEX IF NOT EXISTS conversations_live_contact_key
    ON conversations (phone_number_id, wa_id) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS messages (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE messages
    ADD COLUMN IF NOT EXISTS conversation_id bigint NOT NULL REFERENCES conversations (id),
    ADD COLUMN IF NOT EXISTS direction text NOT NULL
        CONSTRAINT messages_direction_check CHECK (direction IN ('inbound', 'outbound')),
    ADD COLUMN IF NOT EXISTS author text NOT NULL
        CONSTRAINT messages_author_check CHECK (author IN ('contact', 'ai', 'operator')),
    ADD COLUMN IF NOT EXISTS wa_message_id text CONSTRAINT messages_wa_message_id_key UNIQUE,
    ADD COLUMN IF NOT EXISTS idempotency_key text CONSTRAINT messages_idempotency_key_key UNIQUE,
    ADD COLUMN IF NOT EXISTS type text NOT NULL,
    ADD COLUMN IF NOT EXISTS body text,
    ADD COLUMN IF NOT EXISTS payload jsonb,
    ADD COLUMN IF NOT EXISTS status text NOT NULL
        CONSTRAINT messages_status_check CHECK (status IN (
            'received', 'sending', 'unknown', 'sent', 'delivered', 'read', 'played', 'failed')),
    ADD COLUMN IF NOT EXISTS error jsonb,
    ADD COLUMN IF NOT EXISTS contact_sent_at timestamptz,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS sent_at timestamptz,
    ADD COLUMN IF NOT EXISTS delivered_at timestamptz,
    ADD COLUMN IF NOT EXISTS read_at timestamptz,
    ADD COLUMN IF NOT EXISTS failed_at timestamptz,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
-- Who may write which direction, and which key each direction must carry.
ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_shape_check;
ALTER TABLE messages ADD CONSTRAINT messages_shape_check CHECK (
    (direction = 'inbound' AND author = 'contact' AND wa_message_id IS NOT NULL
        AND idempotency_key IS NULL AND status = 'received')
    OR (direction = 'outbound' AND author IN ('ai', 'operator') AND idempotency_key IS NOT NULL
        AND status <> 'received'));
CREATE INDEX IF NOT EXISTS messages_conversation_idx ON messages (conversation_id, id);

CREATE TABLE IF NOT EXISTS outbound_jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE outbound_jobs
    ADD COLUMN IF NOT EXISTS inbound_message_id bigint NOT NULL
        CONSTRAINT outbound_jobs_inbound_message_id_key UNIQUE REFERENCES messages (id),
    ADD COLUMN IF NOT EXISTS conversation_id bigint NOT NULL REFERENCES conversations (id),
    ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'pending'
        CONSTRAINT outbound_jobs_status_check CHECK (
            status IN ('pending', 'running', 'done', 'failed', 'skipped')),
    ADD COLUMN IF NOT EXISTS attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS last_error text,
    ADD COLUMN IF NOT EXISTS skip_reason text,
    ADD COLUMN IF NOT EXISTS request_id text,
    -- No foreign key: finished procrastinate jobs are deleted by retention, this row stays.
    ADD COLUMN IF NOT EXISTS procrastinate_job_id bigint,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS started_at timestamptz,
    ADD COLUMN IF NOT EXISTS finished_at timestamptz,
    ADD COLUMN IF NOT EXISTS updated_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS outbound_jobs_open_idx
    ON outbound_jobs (status, created_at) WHERE status IN ('pending', 'running');

CREATE TABLE IF NOT EXISTS webhook_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE webhook_events
    ADD COLUMN IF NOT EXISTS request_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS received_at timestamptz NOT NULL DEFAULT now(),
    -- bytea: the exact bytes Meta signed; read with convert_from(body, 'UTF8').
    ADD COLUMN IF NOT EXISTS body bytea,
    ADD COLUMN IF NOT EXISTS signature text NOT NULL
        CONSTRAINT webhook_events_signature_check CHECK (
            signature IN ('valid', 'missing', 'invalid', 'not_checked')),
    ADD COLUMN IF NOT EXISTS processed_at timestamptz,
    ADD COLUMN IF NOT EXISTS error text;
CREATE INDEX IF NOT EXISTS webhook_events_received_at_idx ON webhook_events (received_at);

-- Every status webhook as received, one row per (Graph message id, status). Statuses may arrive
-- before the send that produced them is recorded; those are applied when it is.
CREATE TABLE IF NOT EXISTS message_statuses (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE message_statuses
    ADD COLUMN IF NOT EXISTS wa_message_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS status text NOT NULL,
    ADD COLUMN IF NOT EXISTS status_at timestamptz,
    ADD COLUMN IF NOT EXISTS recipient_id text,
    ADD COLUMN IF NOT EXISTS biz_opaque_callback_data text,
    ADD COLUMN IF NOT EXISTS errors jsonb,
    ADD COLUMN IF NOT EXISTS payload jsonb,
    ADD COLUMN IF NOT EXISTS message_id bigint REFERENCES messages (id),
    ADD COLUMN IF NOT EXISTS received_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS message_statuses_wa_message_id_status_key
    ON message_statuses (wa_message_id, status);
CREATE INDEX IF NOT EXISTS message_statuses_unmatched_idx
    ON message_statuses (biz_opaque_callback_data) WHERE message_id IS NULL;

CREATE TABLE IF NOT EXISTS notifications (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE notifications
    ADD COLUMN IF NOT EXISTS conversation_id bigint REFERENCES conversations (id),
    ADD COLUMN IF NOT EXISTS message_id bigint REFERENCES messages (id),
    ADD COLUMN IF NOT EXISTS kind text NOT NULL,
    ADD COLUMN IF NOT EXISTS body text NOT NULL,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS read_at timestamptz,
    ADD COLUMN IF NOT EXISTS snoozed_until timestamptz;
CREATE INDEX IF NOT EXISTS notifications_unread_idx ON notifications (created_at) WHERE read_at IS NULL;
