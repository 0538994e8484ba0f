-- Business-scoped user ids (BSUID): a contact is known by phone number (wa_id), BSUID (user_id),
-- or both. One live conversation per business number and identifier. Re-runnable, like 0002.
-- depends: 0005_reply_functions

ALTER TABLE conversations
    ADD COLUMN IF NOT EXISTS user_id text,
    ADD COLUMN IF NOT EXISTS parent_user_id text,
    ADD COLUMN IF NOT EXISTS username text;
ALTER TABLE conversations ALTER COLUMN wa_id DROP NOT NULL;
ALTER TABLE conversations DROP CONSTRAINT IF EXISTS conversations_contact_identified_check;
ALTER TABLE conversations ADD CONSTRAINT conversations_contact_identified_check
    CHECK (wa_id IS NOT NULL OR user_id IS NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS conversations_live_user_key
    ON conversations (phone_number_id, user_id) WHERE deleted_at IS NULL AND user_id IS NOT NULL;
