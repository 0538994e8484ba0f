DROP TRIGGER IF EXISTS waypost_inbox_notifications ON notifications;
DROP TRIGGER IF EXISTS waypost_inbox_messages ON messages;
DROP TRIGGER IF EXISTS waypost_inbox_conversations ON conversations;
DROP FUNCTION IF EXISTS waypost_notify_inbox_v1();
ALTER TABLE messages DROP COLUMN IF EXISTS operator_id;
ALTER TABLE conversations DROP COLUMN IF EXISTS operator_read_at;
DROP TABLE IF EXISTS sign_in_attempts, operators;
