-- Inbound media: the download's state (media) and the file's bytes (media_chunks, one row per chunk).

-- media_insert --
-- A media message's row, once: a redelivered webhook finds it there (no id returned then)
INSERT INTO media (message_id, wa_media_id, kind, mime_type, sha256, filename, voice)
VALUES (%(message_id)s, %(wa_media_id)s, %(kind)s, %(mime_type)s, %(sha256)s, %(filename)s, %(voice)s)
ON CONFLICT (message_id) DO NOTHING
RETURNING id

-- media_start --
-- Take a pending download for an attempt (one more attempt); none when it is stored or given up
UPDATE media m
   SET attempts = m.attempts + 1
  FROM messages msg
 WHERE m.id = %(media_id)s AND m.status = 'pending' AND msg.id = m.message_id
RETURNING m.id, m.message_id, msg.conversation_id, m.wa_media_id, m.kind, m.mime_type, m.sha256, m.attempts

-- media_clear_chunks --
-- An attempt starts from nothing: chunks of an earlier attempt go (in the same transaction)
DELETE FROM media_chunks WHERE media_id = %(media_id)s

-- media_chunk_insert --
-- One chunk of a file being stored
INSERT INTO media_chunks (media_id, seq, data) VALUES (%(media_id)s, %(seq)s, %(data)s)

-- media_stored --
-- The file's bytes are all stored (in media_chunks, or one object in the S3 store): the download is done
UPDATE media
   SET status = 'stored', mime_type = %(mime_type)s, byte_size = %(byte_size)s, stored_at = now(), last_error = NULL,
       storage = %(storage)s, object_bucket = %(object_bucket)s, object_key = %(object_key)s
 WHERE id = %(media_id)s

-- media_message_changed --
-- Touch the media's message: its row's trigger tells open inbox pages (waypost_notify_inbox_v1)
UPDATE messages SET updated_at = now() WHERE id = (SELECT message_id FROM media WHERE id = %(media_id)s)

-- media_note --
-- Why the last attempt failed (another attempt follows)
UPDATE media SET last_error = %(last_error)s WHERE id = %(media_id)s

-- media_give_up --
-- The download is given up: the message stays, the inbox says the file could not be fetched
UPDATE media SET status = 'failed', last_error = %(last_error)s
 WHERE id = %(media_id)s AND status = 'pending'
RETURNING id

-- media_file --
-- What the inbox serves for a media row: its type, name and size, once stored
SELECT id, kind, mime_type, filename, byte_size, status, storage, object_bucket, object_key
  FROM media
 WHERE id = %(media_id)s

-- media_chunk --
-- One chunk of a stored file, by its position
SELECT data FROM media_chunks WHERE media_id = %(media_id)s AND seq = %(seq)s

-- Outbound media: an operator's or the AI's file, uploaded to Meta by the worker before the send.

-- media_insert_staged --
-- An operator's file being written before its message exists (message_id NULL: staged): its bytes go
-- to the media store outside the transaction that queues the message, which then links it
INSERT INTO media (message_id, wa_media_id, kind, mime_type, filename, status)
VALUES (NULL, NULL, %(kind)s, %(mime_type)s, %(filename)s, 'pending')
RETURNING id

-- media_link_staged --
-- A staged file becomes its (just queued) outbound message's; false if it is not staged (any more)
UPDATE media SET message_id = %(message_id)s WHERE id = %(media_id)s AND message_id IS NULL AND status = 'stored'
RETURNING id

-- media_staged --
-- A staged file's row, locked, to discard it (its message was not queued, or never will be)
SELECT id, storage, object_bucket, object_key FROM media
 WHERE id = %(media_id)s AND message_id IS NULL
   FOR UPDATE SKIP LOCKED

-- media_delete_staged --
DELETE FROM media WHERE id = ANY(%(media_ids)s) AND message_id IS NULL

-- sweep_stale_staged_media --
-- Staged files never linked to a message (the web process died between the write and the queue, or
-- the discard failed), older than an hour: a batch per run, locked while their objects are deleted
SELECT id, storage, object_bucket, object_key FROM media
 WHERE message_id IS NULL AND created_at < now() - make_interval(secs => %(seconds)s)
 ORDER BY id
 LIMIT 200
   FOR UPDATE SKIP LOCKED

-- media_stored_outbound --
-- The outbound file's bytes are all written: its checksum
UPDATE media SET sha256 = %(sha256)s WHERE id = %(media_id)s

-- media_outbound --
-- The file of an outbound message, and whether Meta still holds its upload (30 days; a day's margin)
SELECT id, kind, mime_type, filename, byte_size, status, wa_media_id, storage, object_bucket, object_key,
       wa_media_id IS NOT NULL AND uploaded_at > now() - interval '29 days' AS upload_fresh
  FROM media WHERE message_id = %(message_id)s

-- media_uploaded --
-- The file was uploaded to Meta: a retry sends this id without uploading again
UPDATE media SET wa_media_id = %(wa_media_id)s, uploaded_at = now() WHERE id = %(media_id)s
