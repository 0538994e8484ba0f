DROP TABLE IF EXISTS operator_sessions;
ALTER TABLE webhook_events DROP COLUMN IF EXISTS body_sha256, DROP COLUMN IF EXISTS body_size;
