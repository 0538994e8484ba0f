DROP INDEX IF EXISTS conversations_handed_over_idx;
ALTER TABLE conversations
    DROP COLUMN IF EXISTS owned_at,
    DROP COLUMN IF EXISTS owner_operator_id,
    DROP COLUMN IF EXISTS handover_reason,
    DROP COLUMN IF EXISTS handed_over_at;
