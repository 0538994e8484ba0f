"""A contact's conversation found with a plan that does not depend on the table's statistics (issue 17).
Installs waypost_resolve_conversation_v2 (one unique-index equality per identifier, then the rows
locked in id order) and the versions that call it: waypost_ingest_inbound_message_v5,
waypost_ingest_echo_v2 and waypost_store_webhook_v3. The older versions stay installed for a rollback
and for code not yet deployed. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0039_inbox_reply_jobs"}

steps = [
    step(
        function_source("waypost_resolve_conversation_v2"),
        "DROP FUNCTION IF EXISTS waypost_resolve_conversation_v2(text, text, text, text, text, text, timestamptz)",
    ),
    step(
        function_source("waypost_ingest_inbound_message_v5"),
        "DROP FUNCTION IF EXISTS waypost_ingest_inbound_message_v5(text, text, text, text, text, text, text, text,"
        " text, text, text, jsonb, timestamptz, boolean, text, interval, interval, text, text)",
    ),
    step(
        function_source("waypost_ingest_echo_v2"),
        "DROP FUNCTION IF EXISTS waypost_ingest_echo_v2(text, text, text, text, text, text, jsonb, timestamptz,"
        " boolean)",
    ),
    step(
        function_source("waypost_store_webhook_v3"),
        "DROP FUNCTION IF EXISTS waypost_store_webhook_v3(text, bytea, bytea, text, jsonb, jsonb, interval,"
        " interval, text, text)",
    ),
]
