-- The count of the AI's replies in a row (WAYPOST_HANDOVER_AFTER_AI_REPLIES, README "Handing over") runs
-- before every AI answer and starts after the conversation's last handover: an index of the handover
-- notifications keeps that lookup off a scan of every notification. Re-runnable.
-- depends: 0032_handover_ownership

CREATE INDEX IF NOT EXISTS notifications_handover_idx ON notifications (conversation_id, message_id)
 WHERE kind = 'handover';
