-- Cost and delivery (migration 0019_pricing): what each message cost, and messages never delivered.

-- costs_by_month --
-- Priced messages per number, month, category and type, the latest months first
SELECT phone_number_id, month, category, type, messages, billable
  FROM waypost_message_costs
 WHERE month >= (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => %(months)s))::date
 ORDER BY month DESC, phone_number_id, category NULLS LAST, type NULLS LAST

-- sweep_flag_undelivered --
-- Outbound messages accepted by Meta (sent) with no delivered/read status after %(after)s seconds:
-- flagged once (a concurrent sweep re-checks undelivered_at under the row lock) and notified
WITH flagged AS (
    UPDATE messages m SET undelivered_at = now(), updated_at = clock_timestamp()
     WHERE m.direction = 'outbound' AND m.status = 'sent' AND m.undelivered_at IS NULL
       AND m.sent_at < now() - make_interval(secs => %(after)s)
    RETURNING m.id, m.conversation_id, m.sent_at
), noted AS (
    INSERT INTO notifications (conversation_id, message_id, kind, body)
    SELECT f.conversation_id, f.id, 'not_delivered',
           format('Message %%s was accepted by WhatsApp at %%s but is still not delivered after %%s minutes '
                  '(a number without a valid payment method, or a phone that stayed offline)',
                  f.id, to_char(f.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'),
                  round(%(after)s::numeric / 60, 1))
      FROM flagged f
    RETURNING 1
)
SELECT count(*) AS flagged FROM noted

-- metrics_undelivered --
-- Messages flagged not delivered that still have no delivered/read/failed status
SELECT count(*) AS messages FROM messages WHERE undelivered_at IS NOT NULL AND status = 'sent'

-- budget_service_messages --
-- Service messages a business number has sent this calendar month (UTC): accepted outbound
-- messages Meta priced as service, or not priced yet (a free-form message is a service message)
SELECT count(*) AS messages, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AS month
  FROM messages m
  JOIN conversations c ON c.id = m.conversation_id
 WHERE c.phone_number_id = %(phone_number_id)s AND m.direction = 'outbound'
   AND m.sent_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
   AND m.status <> 'failed' AND (m.pricing_category IS NULL OR m.pricing_category = 'service')

-- notification_insert_ever_once --
-- A notification unless one with this kind and text was ever made (read or not): said once, also
-- when two workers make it at the same moment (the unique once_key; the second waits and does nothing)
INSERT INTO notifications (kind, body, once_key)
VALUES (%(kind)s, %(body)s, %(kind)s || ':' || %(body)s)
ON CONFLICT (once_key) WHERE once_key IS NOT NULL DO NOTHING
