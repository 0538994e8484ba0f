-- Hardening: the journal keeps evidence of refused POSTs without storing their bodies, and inbox
-- sessions live on the server, so that sign-out, a password reset or disabling an operator ends them.
-- Re-runnable, like 0002.
-- depends: 0010_operator_functions

ALTER TABLE webhook_events
    -- Size and SHA-256 of the body as received. A POST whose signature is missing or invalid keeps
    -- only the first bytes of its body in `body` (unsigned traffic cannot fill the disk).
    ADD COLUMN IF NOT EXISTS body_size integer,
    ADD COLUMN IF NOT EXISTS body_sha256 bytea;

-- One row per inbox sign-in. The cookie carries a random token; only its SHA-256 is stored, so
-- reading this table opens no session. A session ends at sign-out, on a password reset, when its
-- operator is disabled, on `waypost operator sessions EMAIL --revoke`, or after
-- WAYPOST_SESSION_MAX_AGE_SECONDS without a request.
CREATE TABLE IF NOT EXISTS operator_sessions (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE operator_sessions
    ADD COLUMN IF NOT EXISTS operator_id bigint NOT NULL REFERENCES operators (id) ON DELETE CASCADE,
    ADD COLUMN IF NOT EXISTS token_sha256 bytea NOT NULL,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS last_seen_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS ended_at timestamptz,
    -- signed_out, replaced (signed in again in the same browser), password_reset, disabled, revoked
    ADD COLUMN IF NOT EXISTS end_reason text,
    ADD COLUMN IF NOT EXISTS client_ip text,
    ADD COLUMN IF NOT EXISTS user_agent text;
CREATE UNIQUE INDEX IF NOT EXISTS operator_sessions_token_key ON operator_sessions (token_sha256);
CREATE INDEX IF NOT EXISTS operator_sessions_live_idx ON operator_sessions (operator_id) WHERE ended_at IS NULL;
