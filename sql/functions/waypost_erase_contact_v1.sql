-- Erase everything stored about a contact, in the caller's transaction: their conversations, messages,
-- media (chunks; the S3 objects are listed in the result for the caller to delete before it commits),
-- edits, statuses, reply jobs and their queued procrastinate jobs, notifications, and every journal row
-- whose body or error names one of their identifiers. Writes one `erasures` row (when, by whom, counts;
-- never whom) when anything was removed. Returns {"erasure_id", "counts", "objects": [[media_id, bucket, key]]}.
CREATE OR REPLACE FUNCTION waypost_erase_contact_v1(p_identifier text, p_erased_by text)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_ids text[];
    v_convs bigint[];
    v_msgs bigint[];
    v_wamids text[];
    v_media bigint[];
    v_jobs bigint[];
    v_needles bytea[];
    v_objects jsonb;
    v_counts jsonb := '{}';
    v_total bigint := 0;
    v_n bigint;
    v_erasure bigint;
BEGIN
    SELECT identifiers, conversation_ids INTO v_ids, v_convs FROM waypost_contact_identifiers_v1(p_identifier);
    -- Held until commit: a webhook for this contact waits, then starts afresh.
    PERFORM 1 FROM conversations WHERE id = ANY (v_convs) FOR UPDATE;
    -- A send in flight would reach the contact after the erasure and leave no trace: wait for it.
    IF EXISTS (SELECT 1 FROM procrastinate_jobs
               WHERE status = 'doing' AND lock IN (SELECT 'conversation:' || c FROM unnest(v_convs) AS c)) THEN
        RAISE EXCEPTION 'a message to this contact is being sent: try again in a minute'
            USING ERRCODE = 'lock_not_available';
    END IF;
    SELECT coalesce(array_agg(id), '{}'), coalesce(array_agg(wa_message_id) FILTER (WHERE wa_message_id IS NOT NULL), '{}')
        INTO v_msgs, v_wamids FROM messages WHERE conversation_id = ANY (v_convs);
    SELECT coalesce(array_agg(id), '{}') INTO v_media FROM media WHERE message_id = ANY (v_msgs);
    SELECT coalesce(array_agg(id), '{}') INTO v_jobs
        FROM outbound_jobs WHERE conversation_id = ANY (v_convs) OR inbound_message_id = ANY (v_msgs);
    SELECT coalesce(jsonb_agg(jsonb_build_array(id, object_bucket, object_key)), '[]') INTO v_objects
        FROM media WHERE id = ANY (v_media) AND storage = 's3' AND object_key IS NOT NULL;

    -- Queued jobs only name row ids; those of erased rows would find nothing: not left to run.
    DELETE FROM procrastinate_jobs
    WHERE status = 'todo'
      AND ((task_name = 'send_reply' AND (args ->> 'outbound_job_id')::bigint = ANY (v_jobs))
        OR (task_name = 'send_operator_message' AND (args ->> 'message_id')::bigint = ANY (v_msgs))
        OR (task_name IN ('download_media', 'transcribe_media') AND (args ->> 'media_id')::bigint = ANY (v_media)));
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('procrastinate_jobs', v_n); v_total := v_total + v_n;
    DELETE FROM media_chunks WHERE media_id = ANY (v_media);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('media_chunks', v_n); v_total := v_total + v_n;
    DELETE FROM media WHERE id = ANY (v_media);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('media', v_n); v_total := v_total + v_n;
    DELETE FROM message_changes
    WHERE event_message_id = ANY (v_msgs) OR message_id = ANY (v_msgs) OR original_wa_message_id = ANY (v_wamids);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('message_changes', v_n); v_total := v_total + v_n;
    DELETE FROM message_statuses
    WHERE message_id = ANY (v_msgs) OR wa_message_id = ANY (v_wamids) OR recipient_id = ANY (v_ids);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('message_statuses', v_n); v_total := v_total + v_n;
    DELETE FROM notifications WHERE conversation_id = ANY (v_convs) OR message_id = ANY (v_msgs);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('notifications', v_n); v_total := v_total + v_n;
    -- consent events carry the identifiers themselves (they outlive a conversation): they go too
    DELETE FROM consent_events
     WHERE conversation_id = ANY (v_convs) OR wa_id = ANY (v_ids) OR user_id = ANY (v_ids);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('consent_events', v_n); v_total := v_total + v_n;
    DELETE FROM block_requests WHERE conversation_id = ANY (v_convs);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('block_requests', v_n); v_total := v_total + v_n;
    DELETE FROM outbound_jobs WHERE id = ANY (v_jobs);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('outbound_jobs', v_n); v_total := v_total + v_n;
    DELETE FROM messages WHERE id = ANY (v_msgs);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('messages', v_n); v_total := v_total + v_n;
    DELETE FROM conversations WHERE id = ANY (v_convs);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('conversations', v_n); v_total := v_total + v_n;

    -- The journal: a row whose body names the contact goes whole (other contacts' items in the same
    -- POST keep their stored messages, not this raw copy). Identifiers are matched as JSON strings,
    -- quoted, so one number is not found inside a longer one.
    SELECT array_agg(convert_to('"' || x || '"', 'UTF8')) INTO v_needles FROM unnest(v_ids) AS x;
    DELETE FROM webhook_events w
    WHERE EXISTS (
        SELECT 1 FROM unnest(v_needles) AS needle
        WHERE position(needle IN coalesce(w.body, ''::bytea)) > 0
           OR position(btrim(convert_from(needle, 'UTF8'), '"') IN coalesce(w.error, '')) > 0);
    GET DIAGNOSTICS v_n = ROW_COUNT; v_counts := v_counts || jsonb_build_object('webhook_events', v_n); v_total := v_total + v_n;

    IF v_total > 0 THEN
        INSERT INTO erasures (erased_by, counts) VALUES (p_erased_by, v_counts) RETURNING id INTO v_erasure;
    END IF;
    RETURN jsonb_build_object('erasure_id', v_erasure, 'counts', v_counts, 'objects', v_objects);
END;
$$;
