DROP INDEX IF EXISTS conversations_live_user_key;
ALTER TABLE conversations DROP CONSTRAINT IF EXISTS conversations_contact_identified_check;
ALTER TABLE conversations ALTER COLUMN wa_id SET NOT NULL;
ALTER TABLE conversations DROP COLUMN IF EXISTS user_id, DROP COLUMN IF EXISTS parent_user_id,
    DROP COLUMN IF EXISTS username;
