DELETE FROM media WHERE message_id IS NULL;
DROP INDEX IF EXISTS media_staged_idx;
ALTER TABLE media ALTER COLUMN message_id SET NOT NULL;
