DROP INDEX IF EXISTS messages_reply_to_idx;
ALTER TABLE messages DROP COLUMN IF EXISTS reply_to_message_id, DROP COLUMN IF EXISTS send_attempts,
    DROP COLUMN IF EXISTS sending_since;
