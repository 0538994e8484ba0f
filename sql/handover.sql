-- Named queries of a conversation's ownership after a handover (README "Handing over"), loaded by
-- name like sql/queries.sql.

-- handover_operator_answered --
-- An operator's message in a conversation whose AI is paused (after it was queued, in the same
-- transaction): that operator owns it, it no longer waits for a person, and the hand-back clock
-- starts again. A conversation the AI still answers stays the AI's.
UPDATE conversations SET owner_operator_id = %(operator_id)s, owned_at = now(), updated_at = now()
 WHERE id = %(conversation_id)s AND NOT ai_enabled AND deleted_at IS NULL

-- handover_phone_answered --
-- A reply sent from the WhatsApp Business app (an echo) in a conversation whose AI is paused: a person
-- answered, so it no longer waits for one and the hand-back clock starts again (its owner stays)
UPDATE conversations SET owned_at = now(), updated_at = now()
 WHERE id = %(conversation_id)s AND NOT ai_enabled AND deleted_at IS NULL

-- sweep_hand_back --
-- Handed-over conversations with no operator message (nor take-over) for %(after)s seconds go back to
-- the AI, each with a `handed_back` notification. Once: a concurrent sweep skips the rows this one
-- locked, and re-checks the conditions of a row changed since its snapshot.
WITH due AS (
    SELECT c.id, c.handover_reason FROM conversations c
     WHERE c.handed_over_at IS NOT NULL AND NOT c.ai_enabled AND c.deleted_at IS NULL
       AND greatest(c.handed_over_at, c.owned_at) < now() - make_interval(secs => %(after)s)
     ORDER BY c.handed_over_at LIMIT 500
       FOR UPDATE SKIP LOCKED
), back AS (
    UPDATE conversations c SET ai_enabled = true, handed_over_at = NULL, handover_reason = NULL,
           owner_operator_id = NULL, owned_at = NULL, updated_at = now()
      FROM due WHERE c.id = due.id
    RETURNING c.id, due.handover_reason
), noted AS (
    INSERT INTO notifications (conversation_id, kind, body)
    SELECT b.id, 'handed_back',
           format('Handed back to the AI: no operator message for %%s minutes after the handover (%%s)',
                  trim_scale(round(%(after)s::numeric / 60, 1)), coalesce(b.handover_reason, 'no reason given'))
      FROM back b
    RETURNING 1
)
SELECT count(*) AS handed_back FROM noted

-- handover_owed --
-- Whether one of these messages (a turn's) was handed over while the conversation still waits for a
-- person: a run that died after the handover but before its message was claimed left it owed
SELECT EXISTS (
    SELECT 1 FROM notifications n JOIN conversations c ON c.id = n.conversation_id
     WHERE n.kind = 'handover' AND n.message_id = ANY(%(message_ids)s)
       AND NOT c.ai_enabled AND c.handed_over_at IS NOT NULL
) AS owed
