-- Message templates as an operator's send and the inbox's picker read them (webhook/inbox/templates.py).

-- template_for_send --
-- The stored template a send names, read in the send's transaction (a sync waits for it): its
-- components and parameter counts decide whether the parameters fit it
SELECT name, language, category, status, components, body_params, header_params, button_params
  FROM message_templates
 WHERE name = %(name)s AND language = %(language)s
   FOR SHARE

-- templates_for_picker --
-- The approved templates an operator may pick in a conversation, with whether the contact may
-- receive a marketing one (waypost_may_receive_marketing_v1)
SELECT t.name, t.language, t.category, t.components, t.body_params, t.header_params, t.button_params,
       waypost_may_receive_marketing_v1(c.phone_number_id, c.wa_id, c.user_id) AS may_receive_marketing
  FROM message_templates t
  JOIN conversations c ON c.id = %(conversation_id)s
 WHERE t.status = 'APPROVED'
 ORDER BY t.name, t.language
