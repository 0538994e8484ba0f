-- The last messages of a conversation the AI reads, up to and including `p_message_id`, newest first:
-- texts, captions, files (a voice note with its transcript, a document with its name), the contact's
-- reactions (not those taken back), each with the message it quotes (context.id) or reacts to; not
-- those their sender deleted for everyone (the AI forgets them). Was the `reply_history` query; a
-- function so that waypost_start_reply_v2 reads it in the reply run's first statement (issue 17).
CREATE OR REPLACE FUNCTION waypost_reply_history_v1(p_conversation_id bigint, p_message_id bigint, p_limit integer)
    RETURNS TABLE (id bigint, author text, type text, body text,
                   media_id bigint, media_status text, mime_type text, filename text, transcript text,
                   byte_size bigint, storage text, object_bucket text, object_key text,
                   quoted_author text, quoted_type text, quoted_text text)
    LANGUAGE sql STABLE
AS $$
    SELECT m.id, m.author, m.type, m.body,
           md.id, md.status, md.mime_type, md.filename, md.transcript,
           md.byte_size, md.storage, md.object_bucket, md.object_key,
           q.author, q.type,
           -- a message its sender deleted is quoted by its kind only: the AI forgets its words
           CASE WHEN q.revoked_at IS NULL THEN COALESCE(q.body, qmd.transcript) END
      FROM messages m
      LEFT JOIN media md ON md.message_id = m.id
      LEFT JOIN messages q
             ON q.conversation_id = m.conversation_id
            AND q.wa_message_id = COALESCE(m.payload #>> '{context,id}', m.payload #>> '{reaction,message_id}')
      LEFT JOIN media qmd ON qmd.message_id = q.id
     WHERE m.conversation_id = p_conversation_id AND m.id <= p_message_id
       AND (m.body IS NOT NULL OR md.id IS NOT NULL) AND m.status <> 'failed' AND m.revoked_at IS NULL
       AND NOT (m.type = 'reaction' AND (COALESCE(m.body, '') = '' OR m.direction = 'outbound'))
     ORDER BY m.id DESC
     LIMIT p_limit;
$$;
