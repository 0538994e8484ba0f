-- Read receipts and the typing indicator on the contact's phone (worker/receipts.py; migration
-- 0029_read_receipts). `messages.read_receipt_at` says which inbound messages Meta was told are read;
-- the operators' own unread state (conversations.operator_read_at) is separate.

-- read_receipt_claim --
-- An operator opened the conversation (WAYPOST_READ_RECEIPTS=operator_open): its inbound messages not
-- yet marked read, received within Meta's 30 days, are claimed in one statement (a second open finds
-- none: the call is queued once), and the latest is returned (NULL: none) for the worker to name to Meta, which
-- marks the earlier ones read with it. Edits, deletions and system messages are events, not messages
-- the contact sees.
WITH claimed AS (
    UPDATE messages m SET read_receipt_at = now()
      FROM conversations c
     WHERE c.id = %(conversation_id)s AND c.deleted_at IS NULL
       AND m.conversation_id = c.id AND m.direction = 'inbound' AND m.read_receipt_at IS NULL
       AND m.type NOT IN ('edit', 'revoke', 'system')
       AND m.created_at > now() - interval '30 days'
    RETURNING m.id
)
SELECT max(id) AS message_id FROM claimed

-- read_receipt_load --
-- The message an operator's open claimed, with the business number to call Meta from
SELECT m.id, m.conversation_id, m.wa_message_id, m.read_receipt_at, c.phone_number_id
  FROM messages m
  JOIN conversations c ON c.id = m.conversation_id
 WHERE m.id = %(message_id)s AND m.read_receipt_at IS NOT NULL

-- read_receipt_release --
-- Meta refused the call (or never answered): the messages that claim marked are unread again, for the
-- next open to try (rows marked since by another call keep their time)
UPDATE messages SET read_receipt_at = NULL
 WHERE conversation_id = %(conversation_id)s AND direction = 'inbound' AND read_receipt_at = %(claimed_at)s

-- read_receipt_pending --
-- Whether an inbound message is still unread on the contact's phone
SELECT read_receipt_at IS NULL AS pending FROM messages WHERE id = %(message_id)s

-- read_receipt_mark --
-- Meta marked an inbound message read as the AI started answering it: it and the earlier inbound
-- messages of its conversation are read on the contact's phone
UPDATE messages SET read_receipt_at = now()
 WHERE conversation_id = %(conversation_id)s AND direction = 'inbound' AND id <= %(message_id)s
   AND read_receipt_at IS NULL
