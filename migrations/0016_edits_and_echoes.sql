-- Edits and deletions of messages (the contact's, and the business's own from the WhatsApp Business
-- app), and the messages the business sends from that app (coexistence "echoes"). Re-runnable, like 0002.
-- Echoes are outbound rows of author 'operator' with source 'phone_app': messages_author_check and
-- messages_shape_check stay as 0002 wrote them (a drift repair re-runs 0002, which re-adds those).
-- depends: 0015_media_text

ALTER TABLE messages
    -- when the sender last edited the message (the edit's own timestamp); the earlier texts are in
    -- message_changes
    ADD COLUMN IF NOT EXISTS edited_at timestamptz,
    -- when the sender deleted it for everyone; its text stays, for operators and audit
    ADD COLUMN IF NOT EXISTS revoked_at timestamptz,
    -- where an outbound message was written outside Waypost: 'phone_app' (the WhatsApp Business app,
    -- a smb_message_echoes webhook); NULL for everything Waypost wrote or received itself
    ADD COLUMN IF NOT EXISTS source text
        CONSTRAINT messages_source_check CHECK (source IN ('phone_app'));

-- One row per edit or revoke event (itself stored as a message of type 'edit' or 'revoke', body NULL).
-- message_id is NULL while the message it names is unknown (an event that came first, or one for a
-- message Waypost never had): it is applied when that message arrives, and shown as such meanwhile.
CREATE TABLE IF NOT EXISTS message_changes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE message_changes
    ADD COLUMN IF NOT EXISTS event_message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    ADD COLUMN IF NOT EXISTS kind text NOT NULL
        CONSTRAINT message_changes_kind_check CHECK (kind IN ('edit', 'revoke')),
    ADD COLUMN IF NOT EXISTS original_wa_message_id text NOT NULL,
    ADD COLUMN IF NOT EXISTS message_id bigint REFERENCES messages (id) ON DELETE CASCADE,
    -- the message's text when the change was applied, and (edits) the text it has since
    ADD COLUMN IF NOT EXISTS body_before text,
    ADD COLUMN IF NOT EXISTS body_after text,
    -- the event's own timestamp (when the sender made the change)
    ADD COLUMN IF NOT EXISTS changed_at timestamptz NOT NULL,
    ADD COLUMN IF NOT EXISTS applied_at timestamptz,
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
CREATE UNIQUE INDEX IF NOT EXISTS message_changes_event_message_id_key ON message_changes (event_message_id);
CREATE INDEX IF NOT EXISTS message_changes_pending_idx
    ON message_changes (original_wa_message_id) WHERE message_id IS NULL;
CREATE INDEX IF NOT EXISTS message_changes_message_idx ON message_changes (message_id) WHERE message_id IS NOT NULL;
