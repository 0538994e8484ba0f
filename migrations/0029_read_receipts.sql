-- Read receipts on the contact's phone (issue 16): when Waypost marked an inbound message read
-- through the Cloud API, kept apart from the operators' own unread state
-- (conversations.operator_read_at). Re-runnable.
-- depends: 0028_knowledge

ALTER TABLE messages
    -- set once the message is marked read (or, for an operator's open, queued to be): by the call
    -- naming it or a later message of its conversation; cleared again when Meta refused that call
    ADD COLUMN IF NOT EXISTS read_receipt_at timestamptz;
