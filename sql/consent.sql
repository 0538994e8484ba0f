-- Consent: marketing opt-outs and opt-ins, and blocks (migration 0018_consent; README "Consent").

-- consent_record_keyword --
-- A contact's message that was only an opt-out or opt-in word, as an event of its contact; once per
-- message however often Meta delivers it (nothing returned the second time)
INSERT INTO consent_events (phone_number_id, wa_id, user_id, conversation_id, kind, source, message_id,
                            event_key, occurred_at)
SELECT c.phone_number_id, c.wa_id, c.user_id, c.id, %(kind)s, 'keyword', m.id,
       'message:' || m.wa_message_id, coalesce(m.contact_sent_at, m.created_at)
  FROM messages m JOIN conversations c ON c.id = m.conversation_id
 WHERE m.id = %(message_id)s
ON CONFLICT (event_key) DO NOTHING
RETURNING id, conversation_id

-- consent_record_preference --
-- A user_preferences webhook item (marketing stop or resume), once per item; its contact's live
-- conversation, if any, is named for the inbox
INSERT INTO consent_events (phone_number_id, wa_id, user_id, conversation_id, kind, source, event_key, occurred_at)
SELECT %(phone_number_id)s, %(wa_id)s, %(user_id)s,
       (SELECT c.id FROM conversations c
         WHERE c.phone_number_id = %(phone_number_id)s AND c.deleted_at IS NULL
           AND (c.wa_id = %(wa_id)s OR c.user_id = %(user_id)s)
         ORDER BY c.id LIMIT 1),
       %(kind)s, 'user_preferences', %(event_key)s, %(occurred_at)s
ON CONFLICT (event_key) DO NOTHING
RETURNING id, conversation_id

-- consent_keyword_of_message --
-- Whether one of the inbound messages a reply answers (`message_ids`, its turn's) was an opt-out or
-- opt-in word, the newest such (the reply task then confirms it, in the word's language)
SELECT e.kind, m.type, m.body
  FROM consent_events e JOIN messages m ON m.id = e.message_id
 WHERE e.message_id = ANY(%(message_ids)s) AND e.source = 'keyword'
 ORDER BY m.id DESC
 LIMIT 1

-- consent_of_conversation --
-- A conversation's contact: marketing opt-out (latest of opt_out/opt_in of either identifier),
-- block (latest of block/unblock), what a marketing template would be told, and the latest block
-- request with Meta's error if it failed
SELECT coalesce(mk.kind = 'opt_out', false) AS marketing_opt_out,
       mk.occurred_at AS marketing_changed_at, mk.source AS marketing_source,
       coalesce(bl.kind = 'block', false) AS blocked, bl.occurred_at AS block_changed_at,
       waypost_may_receive_marketing_v1(c.phone_number_id, c.wa_id, c.user_id) AS may_receive_marketing,
       br.id AS block_request_id, br.action AS block_request_action, br.status AS block_request_status,
       br.error AS block_request_error, br.created_at AS block_request_at
  FROM conversations c
  LEFT JOIN LATERAL (
      SELECT e.kind, e.occurred_at, e.source FROM consent_events e
       WHERE e.phone_number_id = c.phone_number_id AND e.kind IN ('opt_out', 'opt_in')
         AND (e.wa_id = c.wa_id OR e.user_id = c.user_id)
       ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1) mk ON true
  LEFT JOIN LATERAL (
      SELECT e.kind, e.occurred_at FROM consent_events e
       WHERE e.phone_number_id = c.phone_number_id AND e.kind IN ('block', 'unblock')
         AND (e.wa_id = c.wa_id OR e.user_id = c.user_id)
       ORDER BY e.occurred_at DESC, e.id DESC LIMIT 1) bl ON true
  LEFT JOIN LATERAL (
      SELECT r.* FROM block_requests r WHERE r.conversation_id = c.id ORDER BY r.id DESC LIMIT 1) br ON true
 WHERE c.id = %(conversation_id)s

-- may_receive_marketing --
-- The check a marketing template send makes first (waypost_may_receive_marketing_v1)
SELECT waypost_may_receive_marketing_v1(%(phone_number_id)s, %(wa_id)s, %(user_id)s)

-- block_request_insert --
-- An operator's block or unblock of a live conversation's contact, unless one is still pending
-- (nothing returned: the caller says why). A request pending for 10 minutes lost its job: it fails
-- (its job, if it ever runs, finds it no longer pending) and no longer stands in the way.
WITH stale AS (
    UPDATE block_requests
       SET status = 'failed', finished_at = now(),
           error = '{"message": "no answer from the worker within 10 minutes; try again"}'
     WHERE conversation_id = %(conversation_id)s AND status = 'pending'
       AND created_at < now() - interval '10 minutes'
    RETURNING id
)
INSERT INTO block_requests (conversation_id, action, operator_id, request_id)
SELECT c.id, %(action)s, %(operator_id)s, %(request_id)s
  FROM conversations c
 WHERE c.id = %(conversation_id)s AND c.deleted_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM block_requests r
                    WHERE r.conversation_id = c.id AND r.status = 'pending'
                      AND r.id NOT IN (SELECT id FROM stale))
RETURNING id, conversation_id, action, status, created_at

-- block_request_load --
-- A pending block request with its contact's identifiers, for the change_block task
SELECT r.id, r.action, r.operator_id, c.id AS conversation_id, c.phone_number_id, c.wa_id, c.user_id
  FROM block_requests r JOIN conversations c ON c.id = r.conversation_id
 WHERE r.id = %(block_request_id)s AND r.status = 'pending'

-- block_request_done --
-- Meta blocked or unblocked the contact: the request is done and the contact's state changes
WITH done AS (
    UPDATE block_requests SET status = 'done', finished_at = now()
     WHERE id = %(block_request_id)s AND status = 'pending'
    RETURNING id, conversation_id, action, operator_id
)
INSERT INTO consent_events (phone_number_id, wa_id, user_id, conversation_id, kind, source, operator_id,
                            event_key, occurred_at)
SELECT c.phone_number_id, c.wa_id, c.user_id, c.id, d.action, 'operator', d.operator_id,
       'block_request:' || d.id, now()
  FROM done d JOIN conversations c ON c.id = d.conversation_id
ON CONFLICT (event_key) DO NOTHING
RETURNING id

-- block_request_failed --
-- Meta refused the block or unblock: the request keeps its error, which the inbox shows
UPDATE block_requests SET status = 'failed', error = %(error)s, finished_at = now()
 WHERE id = %(block_request_id)s AND status = 'pending'
RETURNING id, conversation_id
