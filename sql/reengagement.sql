-- Automatic re-engagement (worker/reengage.py; README "Message templates").

-- reengagement_queue --
-- Queue the re-engagement template as an AI reply whose window closed (see waypost_queue_reengagement_v1)
SELECT message_id, outcome, detail
  FROM waypost_queue_reengagement_v1(%(conversation_id)s, %(reply_to_message_id)s, %(idempotency_key)s,
                                     %(body)s, %(payload)s, %(parameters)s, %(last_inbound_at)s)
