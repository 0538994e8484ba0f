-- Named queries of edits, deletions and phone-app echoes (webhook/ingest.py), loaded by name like
-- sql/queries.sql.

-- record_message_change --
-- Record an edit or revoke event and apply it when its message is known (see
-- waypost_record_message_change_v2): 'applied' or 'pending'
SELECT waypost_record_message_change_v2(%(event_message_id)s, %(kind)s, %(original_wa_message_id)s, %(body)s,
                                        %(changed_at)s) AS outcome

-- apply_message_changes --
-- Apply the edits and revokes that arrived before their message (see waypost_apply_message_changes_v2)
SELECT waypost_apply_message_changes_v2(%(wa_message_id)s) AS applied

-- ingest_echo --
-- Insert-or-ignore a message the business sent from the WhatsApp Business app (see waypost_ingest_echo_v2)
SELECT message_id, conversation_id, created, paused
  FROM waypost_ingest_echo_v2(%(phone_number_id)s, %(wa_id)s, %(user_id)s, %(wa_message_id)s, %(type)s, %(body)s,
                              %(payload)s, %(sent_at)s, %(pause_ai)s)
