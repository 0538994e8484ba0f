-- Named queries of the operator inbox (webhook/inbox), loaded by name like sql/queries.sql.

-- operator_insert --
-- Create an operator
INSERT INTO operators (email, password_hash) VALUES (%(email)s, %(password_hash)s)
RETURNING id, email, created_at

-- operator_upsert --
-- Create an operator, or set a new password (and re-enable) an existing one
INSERT INTO operators (email, password_hash) VALUES (%(email)s, %(password_hash)s)
ON CONFLICT (lower(email)) DO UPDATE SET password_hash = EXCLUDED.password_hash, disabled_at = NULL
RETURNING id, email, created_at

-- operator_set_disabled --
-- Disable (or enable again) an operator, by email
UPDATE operators SET disabled_at = CASE WHEN %(disabled)s THEN COALESCE(disabled_at, now()) END
 WHERE lower(email) = lower(%(email)s)
RETURNING id, email, disabled_at

-- operator_id_by_email --
-- An operator, enabled or not, by email
SELECT id, email, disabled_at FROM operators WHERE lower(email) = lower(%(email)s)

-- operator_session_start --
-- A signed-in operator's new session (the cookie holds the token, the table its SHA-256)
INSERT INTO operator_sessions (operator_id, token_sha256, client_ip, user_agent)
VALUES (%(operator_id)s, %(token_sha256)s, %(client_ip)s, %(user_agent)s)
RETURNING id

-- operator_session_touch --
-- The operator of a live session: not ended, its operator enabled, used within the idle timeout.
-- Its last_seen_at moves at most once a minute (a write per request would buy nothing).
WITH live AS (
    SELECT s.id AS session_id, o.id, o.email
      FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
     WHERE s.token_sha256 = %(token_sha256)s AND s.ended_at IS NULL AND o.disabled_at IS NULL
       AND s.last_seen_at > now() - make_interval(secs => %(idle_seconds)s)
), touched AS (
    UPDATE operator_sessions s SET last_seen_at = now()
      FROM live WHERE s.id = live.session_id AND s.last_seen_at < now() - interval '1 minute'
)
SELECT id, email, session_id FROM live

-- operator_session_live --
-- Whether a session is live, without counting as a request (an open event stream asking)
SELECT s.id FROM operator_sessions s JOIN operators o ON o.id = s.operator_id
 WHERE s.token_sha256 = %(token_sha256)s AND s.ended_at IS NULL AND o.disabled_at IS NULL
   AND s.last_seen_at > now() - make_interval(secs => %(idle_seconds)s)

-- operator_session_end --
-- End one session (sign-out)
UPDATE operator_sessions SET ended_at = now(), end_reason = %(reason)s
 WHERE token_sha256 = %(token_sha256)s AND ended_at IS NULL

-- operator_sessions_end_all --
-- End every live session of an operator (password reset, disabled, revoked); how many
UPDATE operator_sessions SET ended_at = now(), end_reason = %(reason)s
 WHERE operator_id = %(operator_id)s AND ended_at IS NULL

-- operator_sessions_list --
-- An operator's sessions, newest first, with their state as the inbox judges it
SELECT id, created_at, last_seen_at, client_ip, user_agent, ended_at, end_reason,
       CASE WHEN ended_at IS NOT NULL THEN 'ended: ' || end_reason
            WHEN last_seen_at <= now() - make_interval(secs => %(idle_seconds)s) THEN 'expired'
            ELSE 'active' END AS state
  FROM operator_sessions WHERE operator_id = %(operator_id)s
 ORDER BY id DESC LIMIT 100

-- operator_by_email --
-- An enabled operator, by email, for sign-in
SELECT id, email, password_hash FROM operators WHERE lower(email) = lower(%(email)s) AND disabled_at IS NULL

-- operator_signed_in --
-- Remember a successful sign-in, upgrading the password hash when the library's parameters moved
UPDATE operators SET last_sign_in_at = now(), password_hash = COALESCE(%(password_hash)s, password_hash)
 WHERE id = %(operator_id)s

-- sign_in_attempt_insert --
-- Record a sign-in attempt, as failed until it succeeds
INSERT INTO sign_in_attempts (email, client_ip, succeeded) VALUES (%(email)s, %(client_ip)s, false)
RETURNING id

-- sign_in_succeeded --
-- The attempt succeeded
UPDATE sign_in_attempts SET succeeded = true WHERE id = %(attempt_id)s

-- sign_in_recent_failures --
-- Failed sign-ins within the window (this attempt included): for this email from this client
-- address, from this address whatever the email, and for this email from anywhere; and the seconds
-- until the oldest failure of this address leaves the window
SELECT count(*) FILTER (WHERE email = %(email)s AND client_ip = %(client_ip)s) AS by_email_and_client,
       count(*) FILTER (WHERE client_ip = %(client_ip)s) AS by_client,
       count(*) FILTER (WHERE email = %(email)s) AS by_email,
       COALESCE(extract(epoch FROM min(attempted_at) FILTER (WHERE client_ip = %(client_ip)s)
                                   + make_interval(secs => %(window)s) - now()), 0) AS retry_after
  FROM sign_in_attempts
 WHERE NOT succeeded AND attempted_at > now() - make_interval(secs => %(window)s)
   AND (email = %(email)s OR client_ip = %(client_ip)s)

-- inbox_conversations --
-- The conversations list: live or deleted ones, newest activity first, with their badges.
-- Filters: %(q)s matches name, username or BSUID (text) and number (%(digits)s); %(filter)s is one of
-- unread, ai_paused, waiting (handed over, no operator has taken it), send_failed, window_closed, or
-- NULL. Who owns each: the handover columns and the owning operator's email (migration 0032).
SELECT * FROM (
    SELECT c.id, c.contact_name, c.wa_id, c.user_id, c.username, c.ai_enabled, c.deleted_at,
           c.last_inbound_at, c.created_at,
           c.handed_over_at, c.handover_reason, c.owned_at, ow.email AS owner_email,
           (c.last_inbound_at IS NULL OR c.last_inbound_at < now() - interval '24 hours') AS window_closed,
           last.body AS last_body, last.type AS last_type, last.author AS last_author,
           last.status AS last_status,
           COALESCE(last.created_at, c.created_at) AS activity_at,
           (SELECT count(*) FROM messages u
             WHERE u.conversation_id = c.id AND u.direction = 'inbound'
               AND u.created_at > COALESCE(c.operator_read_at, '-infinity')) AS unread,
           COALESCE((SELECT o.status = 'failed' FROM messages o
                      WHERE o.conversation_id = c.id AND o.direction = 'outbound'
                      ORDER BY o.id DESC LIMIT 1), false) AS send_failed
      FROM conversations c
      LEFT JOIN operators ow ON ow.id = c.owner_operator_id
      LEFT JOIN LATERAL (SELECT m.body, m.type, m.author, m.status, m.created_at FROM messages m
                          WHERE m.conversation_id = c.id
                            AND NOT EXISTS (SELECT 1 FROM message_changes mc  -- shown on the message it changed
                                             WHERE mc.event_message_id = m.id AND mc.message_id IS NOT NULL)
                          ORDER BY m.id DESC LIMIT 1) last ON true
     WHERE (c.deleted_at IS NOT NULL) = %(deleted)s
       AND (%(q)s::text IS NULL
            OR c.contact_name ILIKE '%%' || %(q)s || '%%'
            OR c.username ILIKE '%%' || %(q)s || '%%'
            OR c.user_id ILIKE '%%' || %(q)s || '%%'
            OR (%(digits)s::text <> '' AND c.wa_id LIKE '%%' || %(digits)s || '%%'))
) listed
 WHERE %(filter)s::text IS NULL
    OR (%(filter)s = 'unread' AND unread > 0)
    OR (%(filter)s = 'ai_paused' AND NOT ai_enabled)
    OR (%(filter)s = 'waiting' AND NOT ai_enabled AND handed_over_at IS NOT NULL AND owned_at IS NULL)
    OR (%(filter)s = 'send_failed' AND send_failed)
    OR (%(filter)s = 'window_closed' AND window_closed)
 ORDER BY activity_at DESC, id DESC
 LIMIT %(limit)s

-- inbox_conversation --
-- One conversation, live or deleted, with who owns it
SELECT c.id, c.phone_number_id, c.contact_name, c.wa_id, c.user_id, c.username, c.ai_enabled,
       c.deleted_at, c.last_inbound_at, c.created_at, c.operator_read_at,
       c.handed_over_at, c.handover_reason, c.owned_at, ow.email AS owner_email,
       (c.last_inbound_at IS NULL OR c.last_inbound_at < now() - interval '24 hours') AS window_closed,
       c.last_inbound_at + interval '24 hours' AS window_closes_at
  FROM conversations c LEFT JOIN operators ow ON ow.id = c.owner_operator_id
 WHERE c.id = %(conversation_id)s

-- inbox_messages --
-- The latest messages of a conversation, oldest first, with who wrote them, what became of the
-- AI's job for each inbound one, the message a contact replied to (context.id) and the contact's
-- latest reaction to each (an empty emoji: the reaction was removed), and the operators' latest
-- reaction to it; an operator's reply quotes the message it replies to. An edit or revoke is shown
-- on the message it changed (edited_at and the earlier texts, revoked_at); one whose message Waypost
-- does not have is shown on its own (change_kind). A tap's or an interactive message's Graph object
-- (`interactive`: webhook/inbox/present.py shows the choice or the choices)
SELECT * FROM (
    SELECT m.id, m.direction, m.author, m.type, m.body, m.status, m.error, m.wa_message_id,
           m.contact_sent_at, m.created_at, m.sent_at, m.delivered_at, m.read_at, m.failed_at,
           o.email AS operator_email, j.status AS ai_job_status, j.skip_reason AS ai_skip_reason,
           md.id AS media_id, md.kind AS media_kind, md.mime_type AS media_mime_type,
           md.filename AS media_filename, md.byte_size AS media_size, md.status AS media_status,
           md.last_error AS media_error, md.transcript AS media_transcript,
           md.transcript_status AS media_transcript_status,
           q.id AS quoted_id, q.author AS quoted_author, q.type AS quoted_type, q.body AS quoted_body,
           NULLIF(rx.emoji, '') AS reaction, NULLIF(orx.emoji, '') AS operator_reaction,
           m.source, m.edited_at, m.revoked_at,
           m.pricing_category, m.pricing_type, m.billable, m.undelivered_at,
           (SELECT array_agg(c.body_before ORDER BY c.changed_at, c.id) FROM message_changes c
             WHERE c.message_id = m.id AND c.kind = 'edit') AS earlier_bodies,
           ev.kind AS change_kind, ev.original_wa_message_id AS change_original, ev.body_after AS change_body,
           CASE WHEN m.type IN ('interactive', 'button') THEN m.payload END AS interactive
      FROM messages m
      LEFT JOIN operators o ON o.id = m.operator_id
      LEFT JOIN outbound_jobs j ON j.id = m.turn_id  -- the reply job of the message's turn
      LEFT JOIN media md ON md.message_id = m.id
      LEFT JOIN messages q ON q.conversation_id = m.conversation_id
                          AND (q.wa_message_id = m.payload #>> '{context,id}'
                               OR (m.author = 'operator' AND q.id = m.reply_to_message_id))
      LEFT JOIN (
          SELECT DISTINCT ON (r.payload #>> '{reaction,message_id}')
                 r.payload #>> '{reaction,message_id}' AS target, coalesce(r.body, '') AS emoji
            FROM messages r
           WHERE r.conversation_id = %(conversation_id)s AND r.type = 'reaction' AND r.direction = 'inbound'
           ORDER BY r.payload #>> '{reaction,message_id}', r.id DESC
      ) rx ON rx.target = m.wa_message_id
      LEFT JOIN (
          SELECT DISTINCT ON (r.payload ->> 'message_id')
                 r.payload ->> 'message_id' AS target, coalesce(r.body, '') AS emoji
            FROM messages r
           WHERE r.conversation_id = %(conversation_id)s AND r.type = 'reaction' AND r.direction = 'outbound'
             AND r.status <> 'failed'
           ORDER BY r.payload ->> 'message_id', r.id DESC
      ) orx ON orx.target = m.wa_message_id
      LEFT JOIN message_changes ev ON ev.event_message_id = m.id
     WHERE m.conversation_id = %(conversation_id)s AND ev.message_id IS NULL
     ORDER BY m.id DESC
     LIMIT %(limit)s
) latest ORDER BY id

-- inbox_message --
-- One message, as the inbox shows it
SELECT m.id, m.direction, m.author, m.type, m.body, m.status, m.error, m.wa_message_id,
       m.contact_sent_at, m.created_at, m.sent_at, m.delivered_at, m.read_at, m.failed_at,
       o.email AS operator_email, NULL::text AS ai_job_status, NULL::text AS ai_skip_reason,
       md.id AS media_id, md.kind AS media_kind, md.mime_type AS media_mime_type,
       md.filename AS media_filename, md.byte_size AS media_size, md.status AS media_status,
       md.last_error AS media_error, md.transcript AS media_transcript,
       md.transcript_status AS media_transcript_status,
       q.id AS quoted_id, q.author AS quoted_author, q.type AS quoted_type, q.body AS quoted_body,
       NULL::text AS reaction, NULL::text AS operator_reaction,
       m.source, m.edited_at, m.revoked_at,
       m.pricing_category, m.pricing_type, m.billable, m.undelivered_at,
       (SELECT array_agg(c.body_before ORDER BY c.changed_at, c.id) FROM message_changes c
         WHERE c.message_id = m.id AND c.kind = 'edit') AS earlier_bodies,
       ev.kind AS change_kind, ev.original_wa_message_id AS change_original, ev.body_after AS change_body,
       CASE WHEN m.type IN ('interactive', 'button') THEN m.payload END AS interactive
  FROM messages m
  LEFT JOIN operators o ON o.id = m.operator_id
  LEFT JOIN message_changes ev ON ev.event_message_id = m.id
  LEFT JOIN media md ON md.message_id = m.id
  LEFT JOIN messages q ON q.conversation_id = m.conversation_id
                      AND (q.wa_message_id = m.payload #>> '{context,id}'
                           OR (m.author = 'operator' AND q.id = m.reply_to_message_id))
 WHERE m.id = %(message_id)s

-- inbox_mark_read --
-- The operator has seen the conversation; a no-op (and no NOTIFY) when nothing was unread
UPDATE conversations c SET operator_read_at = now()
 WHERE c.id = %(conversation_id)s
   AND EXISTS (SELECT 1 FROM messages m
                WHERE m.conversation_id = c.id AND m.direction = 'inbound'
                  AND m.created_at > COALESCE(c.operator_read_at, '-infinity'))

-- inbox_set_ai --
-- Pause or resume the AI of a live conversation. Pausing is a take-over: the operator owns it (and a
-- handed-over one no longer waits); resuming hands it back to the AI and ends any handover.
UPDATE conversations SET ai_enabled = %(enabled)s, updated_at = now(),
       owner_operator_id = CASE WHEN %(enabled)s THEN NULL ELSE %(operator_id)s END,
       owned_at = CASE WHEN %(enabled)s THEN NULL ELSE now() END,
       handed_over_at = CASE WHEN %(enabled)s THEN NULL ELSE handed_over_at END,
       handover_reason = CASE WHEN %(enabled)s THEN NULL ELSE handover_reason END
 WHERE id = %(conversation_id)s AND deleted_at IS NULL
RETURNING id

-- inbox_delete_conversation --
-- Soft delete: the contact's next message starts a new conversation
UPDATE conversations SET deleted_at = now(), updated_at = now()
 WHERE id = %(conversation_id)s AND deleted_at IS NULL
RETURNING id

-- inbox_restore_conversation --
-- Undo a soft delete; fails on the live-conversation unique indexes when the contact has a newer one
UPDATE conversations SET deleted_at = NULL, updated_at = now()
 WHERE id = %(conversation_id)s AND deleted_at IS NOT NULL
RETURNING id

-- inbox_queue_operator_message --
-- Queue an operator's message of any kind (see the function)
SELECT message_id, outcome
  FROM waypost_queue_operator_message_v2(%(conversation_id)s, %(idempotency_key)s, %(type)s, %(body)s,
                                         %(payload)s, %(reply_to_message_id)s, %(operator_id)s,
                                         %(pause_ai)s, interval '24 hours')

-- inbox_reaction_target --
-- The contact's message an operator reacts to: Meta's id for it
SELECT wa_message_id FROM messages
 WHERE id = %(message_id)s AND conversation_id = %(conversation_id)s AND direction = 'inbound'
   AND wa_message_id IS NOT NULL AND type <> 'reaction'

-- inbox_notifications --
-- Notifications, newest first: unread and awake ones unless asked for more
SELECT n.id, n.kind, n.body, n.created_at, n.read_at, n.snoozed_until, n.conversation_id, n.message_id,
       c.contact_name, c.wa_id, c.username
  FROM notifications n LEFT JOIN conversations c ON c.id = n.conversation_id
 WHERE (%(include_read)s OR n.read_at IS NULL)
   AND (%(include_snoozed)s OR n.snoozed_until IS NULL OR n.snoozed_until <= now())
 ORDER BY n.created_at DESC, n.id DESC
 LIMIT %(limit)s

-- inbox_notification_counts --
-- Unread notifications awake now, those snoozed, and when the next snoozed one wakes up
SELECT count(*) FILTER (WHERE snoozed_until IS NULL OR snoozed_until <= now()) AS unread,
       count(*) FILTER (WHERE snoozed_until > now()) AS snoozed,
       min(snoozed_until) FILTER (WHERE snoozed_until > now()) AS next_wake
  FROM notifications WHERE read_at IS NULL

-- inbox_notification_read --
-- Mark a notification read
UPDATE notifications SET read_at = COALESCE(read_at, now()) WHERE id = %(notification_id)s
RETURNING id

-- inbox_notification_snooze --
-- Hide a notification until a time (NULL wakes it now)
UPDATE notifications SET snoozed_until = %(until)s WHERE id = %(notification_id)s
RETURNING id, snoozed_until
