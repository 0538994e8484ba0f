"""The common webhook writes each row once (issue 17). Installs waypost_advance_message_status_v2 and
waypost_apply_message_status_v4 (a status webhook writes its message once and its status row once,
and closes the AI's job only when it is still open), waypost_ingest_inbound_message_v4 (an inbound
message written once, its turn_id in it: messages_turn_id_fkey becomes DEFERRABLE INITIALLY IMMEDIATE,
deferred only by that function's transaction), and waypost_store_webhook_v2, which calls them. The
older versions stay installed for a rollback and for code not yet deployed. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0036_reply_fast"}

steps = [
    step(
        "ALTER TABLE messages ALTER CONSTRAINT messages_turn_id_fkey DEFERRABLE INITIALLY IMMEDIATE",
        "ALTER TABLE messages ALTER CONSTRAINT messages_turn_id_fkey NOT DEFERRABLE",
    ),
    step(
        function_source("waypost_ingest_inbound_message_v4"),
        "DROP FUNCTION IF EXISTS waypost_ingest_inbound_message_v4(text, text, text, text, text, text, text, text,"
        " text, text, text, jsonb, timestamptz, boolean, text, interval, interval, text, text)",
    ),
    step(
        function_source("waypost_advance_message_status_v2"),
        "DROP FUNCTION IF EXISTS waypost_advance_message_status_v2(bigint, text, timestamptz, jsonb, jsonb)",
    ),
    step(
        function_source("waypost_apply_message_status_v4"),
        "DROP FUNCTION IF EXISTS waypost_apply_message_status_v4(text, text, timestamptz, text, text, jsonb, jsonb)",
    ),
    step(
        function_source("waypost_store_webhook_v2"),
        "DROP FUNCTION IF EXISTS waypost_store_webhook_v2(text, bytea, bytea, text, jsonb, jsonb, interval,"
        " interval, text, text)",
    ),
]
