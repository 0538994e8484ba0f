-- Who owns a conversation (issue 16, README "Handing over"): the AI, a person it was handed over to
-- and who has not answered yet ("waiting"), or a named operator. Re-runnable.
-- depends: 0031_turns_functions

ALTER TABLE conversations
    -- when the AI handed the conversation over to a person, and why; cleared when it is handed back
    ADD COLUMN IF NOT EXISTS handed_over_at timestamptz,
    ADD COLUMN IF NOT EXISTS handover_reason text,
    -- the operator who took the conversation (paused its AI or wrote in it while paused), and when they
    -- last did: the hand-back clock starts again there
    ADD COLUMN IF NOT EXISTS owner_operator_id bigint REFERENCES operators (id) ON DELETE SET NULL,
    ADD COLUMN IF NOT EXISTS owned_at timestamptz;
-- the sweep's hand-back looks at handed-over conversations only
CREATE INDEX IF NOT EXISTS conversations_handed_over_idx ON conversations (handed_over_at)
    WHERE handed_over_at IS NOT NULL;
