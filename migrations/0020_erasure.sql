-- Erasing a contact (`waypost contact erase`, the inbox's "Erase contact"): one audit row per
-- erasure, saying when, by whom and how many rows of each table went, and never whom. Re-runnable.
-- depends: 0019_pricing

CREATE TABLE IF NOT EXISTS erasures (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
ALTER TABLE erasures
    ADD COLUMN IF NOT EXISTS erased_at timestamptz NOT NULL DEFAULT now(),
    -- the operator's email, or 'cli'
    ADD COLUMN IF NOT EXISTS erased_by text NOT NULL,
    -- {"conversations": n, "messages": n, ...}: rows removed per table; no identifier of the contact
    ADD COLUMN IF NOT EXISTS counts jsonb NOT NULL DEFAULT '{}';
