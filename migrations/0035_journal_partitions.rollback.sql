-- Back to one plain webhook_events, as 0002 and 0011 made it: the rows are copied (a rollback is rare;
-- the table is locked meanwhile), ids kept, the identity continuing after them.
DO $$
DECLARE
    v_next bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass('webhook_events') AND relkind = 'p') THEN
        RETURN;
    END IF;
    LOCK TABLE webhook_events IN ACCESS EXCLUSIVE MODE;
    v_next := nextval(pg_get_serial_sequence('webhook_events', 'id'));
    CREATE TABLE webhook_events_plain (
        id bigint NOT NULL,
        request_id text NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        body bytea,
        signature text NOT NULL,
        processed_at timestamptz,
        error text,
        body_size integer,
        body_sha256 bytea
    );
    INSERT INTO webhook_events_plain
    SELECT id, request_id, received_at, body, signature, processed_at, error, body_size, body_sha256
      FROM webhook_events ORDER BY id;
    DROP TABLE webhook_events;
    ALTER TABLE webhook_events_plain RENAME TO webhook_events;
    EXECUTE format('ALTER TABLE webhook_events ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (START WITH %s)', v_next);
    ALTER TABLE webhook_events
        ADD CONSTRAINT webhook_events_pkey PRIMARY KEY (id),
        ADD CONSTRAINT webhook_events_signature_check
            CHECK (signature IN ('valid', 'missing', 'invalid', 'not_checked'));
    CREATE INDEX webhook_events_received_at_idx ON webhook_events (received_at);
END
$$;
