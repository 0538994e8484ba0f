-- v1's rules in one statement (issue 17): the row locked and read, its status moved forward, its
-- timestamps stamped, the status's pricing stored (p_pricing: Meta's `pricing` object, or NULL) and
-- sending_since cleared when the status moved, so a status webhook updates its message once instead
-- of up to four times. Returns one row, whether the status moved and the message's author and
-- reply_to_message_id (to close the AI's job); none when there is no such outbound message.
-- The subquery reads the row as it is once locked, so two racing statuses of one message are applied
-- one after the other, each against the other's result. FOR NO KEY UPDATE, not FOR UPDATE: the status
-- row's foreign key holds FOR KEY SHARE on the message, which FOR UPDATE waits for, so two statuses of
-- one message each holding that share and each waiting for the other's was a deadlock (v1, README
-- "Mixed traffic"); the UPDATE itself, which changes no key, needs no more.
CREATE OR REPLACE FUNCTION waypost_advance_message_status_v2(
    p_message_id bigint, p_status text, p_status_at timestamptz, p_errors jsonb, p_pricing jsonb
) RETURNS TABLE (moved boolean, author text, reply_to_message_id bigint)
    LANGUAGE sql
AS $$
    UPDATE messages m
       SET status = CASE WHEN cur.moves THEN p_status ELSE m.status END,
           error = CASE WHEN cur.moves AND p_status = 'failed' THEN p_errors ELSE m.error END,
           failed_at = CASE WHEN cur.moves AND p_status = 'failed' THEN p_status_at ELSE m.failed_at END,
           sending_since = CASE WHEN cur.moves THEN NULL ELSE m.sending_since END,
           sent_at = CASE WHEN p_status = 'sent' THEN COALESCE(m.sent_at, p_status_at) ELSE m.sent_at END,
           delivered_at = CASE WHEN p_status = 'delivered' THEN COALESCE(m.delivered_at, p_status_at)
                               ELSE m.delivered_at END,
           read_at = CASE WHEN p_status IN ('read', 'played') THEN COALESCE(m.read_at, p_status_at)
                          ELSE m.read_at END,
           -- kept even when the status itself is stale: a read may overtake the delivered that priced it
           pricing_category = CASE WHEN cur.priced THEN left(p_pricing ->> 'category', 64)
                                   ELSE m.pricing_category END,
           pricing_type = CASE WHEN cur.priced THEN left(p_pricing ->> 'type', 64) ELSE m.pricing_type END,
           billable = CASE WHEN NOT cur.priced THEN m.billable
                           WHEN jsonb_typeof(p_pricing -> 'billable') = 'boolean'
                           THEN (p_pricing ->> 'billable')::boolean END,
           priced_at = CASE WHEN cur.priced THEN COALESCE(m.priced_at, p_status_at) ELSE m.priced_at END,
           updated_at = now()
      FROM (SELECT id,
                   CASE WHEN status = 'failed' THEN false
                        -- failed may follow sent or delivered, never a message the contact has read
                        WHEN p_status = 'failed' THEN COALESCE(waypost_status_rank_v1(status) < 3, false)
                        ELSE COALESCE(waypost_status_rank_v1(p_status) > waypost_status_rank_v1(status), false)
                   END AS moves,
                   COALESCE(jsonb_typeof(p_pricing) = 'object', false) AS priced
              FROM messages
             WHERE id = p_message_id AND direction = 'outbound'
               FOR NO KEY UPDATE) AS cur
     WHERE m.id = cur.id
    RETURNING cur.moves, m.author, m.reply_to_message_id;
$$;
