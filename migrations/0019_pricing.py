"""Cost and delivery: the pricing Meta reports on a status webhook is kept on its message
(`pricing_category`, `pricing_type`, `billable`, `priced_at`); an outbound message accepted by Meta but
never delivered is flagged once by the sweep (`undelivered_at`). The view `waypost_message_costs` counts
priced messages per number, month, category and type. Installs waypost_apply_message_status_v3; v2
stays for a web process of the previous release still running during a deploy. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0018_consent_functions"}

TABLES = """
ALTER TABLE messages
    -- from the status webhook's `pricing` object (docs/whatsapp.md, "Pricing on status webhooks")
    ADD COLUMN IF NOT EXISTS pricing_category text,
    ADD COLUMN IF NOT EXISTS pricing_type text,
    ADD COLUMN IF NOT EXISTS billable boolean,
    ADD COLUMN IF NOT EXISTS priced_at timestamptz,
    -- when the sweep found it accepted (sent) but neither delivered nor read in time
    ADD COLUMN IF NOT EXISTS undelivered_at timestamptz;

-- The sweep's search: accepted outbound messages still waiting for their delivery.
CREATE INDEX IF NOT EXISTS messages_awaiting_delivery_idx ON messages (sent_at)
 WHERE direction = 'outbound' AND status = 'sent' AND undelivered_at IS NULL;
-- The budget's count (worker/budget.py): a number's messages sent this month.
CREATE INDEX IF NOT EXISTS messages_outbound_sent_at_idx ON messages (sent_at) WHERE direction = 'outbound';

-- Priced messages per business number, month (UTC), category and type. `billable` is Meta's flag;
-- where Meta left it out, a `regular` message is the billable kind (docs/whatsapp.md).
CREATE OR REPLACE VIEW waypost_message_costs AS
SELECT c.phone_number_id,
       date_trunc('month', m.priced_at AT TIME ZONE 'UTC')::date AS month,
       m.pricing_category AS category,
       m.pricing_type AS type,
       count(*) AS messages,
       count(*) FILTER (WHERE COALESCE(m.billable, m.pricing_type = 'regular')) AS billable
  FROM messages m
  JOIN conversations c ON c.id = m.conversation_id
 WHERE m.priced_at IS NOT NULL
 GROUP BY 1, 2, 3, 4;
"""

DROP_TABLES = """
DROP VIEW IF EXISTS waypost_message_costs;
DROP INDEX IF EXISTS messages_awaiting_delivery_idx;
DROP INDEX IF EXISTS messages_outbound_sent_at_idx;
ALTER TABLE messages
    DROP COLUMN IF EXISTS pricing_category,
    DROP COLUMN IF EXISTS pricing_type,
    DROP COLUMN IF EXISTS billable,
    DROP COLUMN IF EXISTS priced_at,
    DROP COLUMN IF EXISTS undelivered_at;
"""

steps = [
    step(TABLES, DROP_TABLES),
    step(
        function_source("waypost_apply_message_status_v3"),
        "DROP FUNCTION IF EXISTS waypost_apply_message_status_v3(text, text, timestamptz, text, text, jsonb, jsonb)",
    ),
]
