-- Columns the reply sender needs on outbound messages. Re-runnable, like 0002.
-- depends: 0003_waypost_functions

ALTER TABLE messages
    -- the inbound message an outbound reply answers (its outbound_jobs row hangs off that one)
    ADD COLUMN IF NOT EXISTS reply_to_message_id bigint REFERENCES messages (id),
    -- how many times this message was handed to the Graph API
    ADD COLUMN IF NOT EXISTS send_attempts integer NOT NULL DEFAULT 0,
    -- start of the send attempt in flight; NULL once it ended or was released for a retry
    ADD COLUMN IF NOT EXISTS sending_since timestamptz;
CREATE INDEX IF NOT EXISTS messages_reply_to_idx ON messages (reply_to_message_id)
    WHERE reply_to_message_id IS NOT NULL;
