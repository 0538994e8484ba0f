ALTER TABLE messages DROP COLUMN IF EXISTS read_receipt_at;
