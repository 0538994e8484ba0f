DROP INDEX IF EXISTS notifications_once_key_key;
ALTER TABLE notifications DROP COLUMN IF EXISTS once_key;
