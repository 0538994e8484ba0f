-- Marks done the outbound job whose AI reply is message `p_message_id`, once that reply is known sent.
-- (An operator's message never closes the AI's job.)
CREATE OR REPLACE FUNCTION waypost_finish_reply_job_v1(p_message_id bigint) RETURNS void
    LANGUAGE sql
AS $$
    UPDATE outbound_jobs j
       SET status = 'done', last_error = NULL, finished_at = clock_timestamp(), updated_at = clock_timestamp()
      FROM messages m
     WHERE m.id = p_message_id AND m.author = 'ai' AND m.reply_to_message_id = j.inbound_message_id
       AND m.status IN ('sent', 'delivered', 'read', 'played')
       AND j.status IN ('pending', 'running');
$$;
