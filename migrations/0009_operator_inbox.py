"""The operator inbox: operators, sign-in attempts (rate limiting), who wrote an outbound message,
what an operator has read, and the NOTIFY triggers that keep open inbox pages live.

Re-runnable, like 0002. Its trigger function is installed from sql/functions/, like every other.
"""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0008_operator_views"}

TABLES = """
CREATE TABLE IF NOT EXISTS operators (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE operators
    ADD COLUMN IF NOT EXISTS email text NOT NULL,
    -- argon2id, in the PHC string format (argon2-cffi)
    ADD COLUMN IF NOT EXISTS password_hash text NOT NULL,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN IF NOT EXISTS last_sign_in_at timestamptz,
    ADD COLUMN IF NOT EXISTS disabled_at timestamptz;
CREATE UNIQUE INDEX IF NOT EXISTS operators_email_key ON operators (lower(email));

-- Every sign-in attempt, kept a day: failures per email and per client address are rate-limited.
CREATE TABLE IF NOT EXISTS sign_in_attempts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE sign_in_attempts
    ADD COLUMN IF NOT EXISTS email text NOT NULL,
    ADD COLUMN IF NOT EXISTS client_ip text NOT NULL,
    ADD COLUMN IF NOT EXISTS succeeded boolean NOT NULL,
    ADD COLUMN IF NOT EXISTS attempted_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX IF NOT EXISTS sign_in_attempts_email_idx ON sign_in_attempts (email, attempted_at);
CREATE INDEX IF NOT EXISTS sign_in_attempts_client_ip_idx ON sign_in_attempts (client_ip, attempted_at);

ALTER TABLE conversations
    -- when an operator last looked at the conversation; later inbound messages count as unread
    ADD COLUMN IF NOT EXISTS operator_read_at timestamptz;
ALTER TABLE messages
    -- the operator who wrote an outbound message with author 'operator'
    ADD COLUMN IF NOT EXISTS operator_id bigint REFERENCES operators (id);
"""

DROP_TABLES = """
ALTER TABLE messages DROP COLUMN IF EXISTS operator_id;
ALTER TABLE conversations DROP COLUMN IF EXISTS operator_read_at;
DROP TABLE IF EXISTS sign_in_attempts, operators;
"""

TRIGGERS = """
DROP TRIGGER IF EXISTS waypost_inbox_conversations ON conversations;
CREATE TRIGGER waypost_inbox_conversations AFTER INSERT OR UPDATE ON conversations
    FOR EACH ROW EXECUTE FUNCTION waypost_notify_inbox_v1('id');
DROP TRIGGER IF EXISTS waypost_inbox_messages ON messages;
CREATE TRIGGER waypost_inbox_messages AFTER INSERT OR UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION waypost_notify_inbox_v1('conversation_id');
DROP TRIGGER IF EXISTS waypost_inbox_notifications ON notifications;
CREATE TRIGGER waypost_inbox_notifications AFTER INSERT OR UPDATE ON notifications
    FOR EACH ROW EXECUTE FUNCTION waypost_notify_inbox_v1('conversation_id');
"""

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS waypost_inbox_notifications ON notifications;
DROP TRIGGER IF EXISTS waypost_inbox_messages ON messages;
DROP TRIGGER IF EXISTS waypost_inbox_conversations ON conversations;
"""

steps = [
    step(TABLES, DROP_TABLES),
    step(function_source("waypost_notify_inbox_v1"), "DROP FUNCTION IF EXISTS waypost_notify_inbox_v1()"),
    step(TRIGGERS, DROP_TRIGGERS),
]
