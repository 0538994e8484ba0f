-- Order of outbound delivery statuses. Statuses only move up this order; 'failed' is terminal and
-- ranks apart (NULL). 'delivered' may be skipped: Meta sends 'read' alone when the chat was open.
CREATE OR REPLACE FUNCTION waypost_status_rank_v1(status text) RETURNS integer
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE status
        WHEN 'sending' THEN 0
        WHEN 'unknown' THEN 0
        WHEN 'sent' THEN 1
        WHEN 'delivered' THEN 2
        WHEN 'read' THEN 3
        WHEN 'played' THEN 4
    END
$$;
