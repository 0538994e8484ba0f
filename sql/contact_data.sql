-- Exporting and erasing one contact's data (waypost/contact_data.py).

-- contact_find --
-- Every identifier and conversation of the contact one identifier names.
SELECT identifiers, conversation_ids FROM waypost_contact_identifiers_v1(%(identifier)s);

-- contact_of_conversation --
-- The identifier the inbox erases or exports a conversation's contact by.
SELECT coalesce(wa_id, user_id) AS identifier FROM conversations WHERE id = %(conversation_id)s;

-- contact_conversations --
SELECT id, phone_number_id, wa_id, user_id, parent_user_id, username, contact_name, ai_enabled,
       last_inbound_at, deleted_at, created_at, updated_at, operator_read_at
FROM conversations WHERE id = ANY (%(conversation_ids)s) ORDER BY id;

-- contact_messages --
SELECT id, conversation_id, direction, author, source, wa_message_id, type, body, payload, status, error,
       contact_sent_at, created_at, sent_at, delivered_at, read_at, failed_at, edited_at, revoked_at,
       reply_to_message_id, operator_id
FROM messages WHERE conversation_id = ANY (%(conversation_ids)s) ORDER BY created_at, id;

-- contact_media --
-- The files' descriptions, never their bytes (the inbox serves those, as attachments).
SELECT md.id, md.message_id, md.kind, md.mime_type, md.filename, md.byte_size, md.status, md.storage,
       md.created_at, md.stored_at, md.purged_at, md.transcript
FROM media md JOIN messages m ON m.id = md.message_id
WHERE m.conversation_id = ANY (%(conversation_ids)s) ORDER BY md.id;

-- contact_statuses --
SELECT s.id, s.message_id, s.wa_message_id, s.status, s.status_at, s.errors, s.received_at
FROM message_statuses s
WHERE s.message_id IN (SELECT id FROM messages WHERE conversation_id = ANY (%(conversation_ids)s))
   OR s.recipient_id = ANY (%(identifiers)s)
ORDER BY s.id;

-- contact_message_changes --
SELECT c.id, c.kind, c.message_id, c.original_wa_message_id, c.body_before, c.body_after, c.changed_at
FROM message_changes c JOIN messages m ON m.id = c.event_message_id
WHERE m.conversation_id = ANY (%(conversation_ids)s) ORDER BY c.id;

-- contact_notifications --
SELECT id, conversation_id, message_id, kind, body, created_at, read_at
FROM notifications WHERE conversation_id = ANY (%(conversation_ids)s) ORDER BY id;

-- contact_erase --
-- One transaction with the caller's deletion of the contact's S3 objects (see waypost/contact_data.py).
SELECT waypost_erase_contact_v1(%(identifier)s, %(erased_by)s) AS result;
