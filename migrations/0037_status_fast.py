"""Installs waypost_advance_message_status_v2, waypost_apply_message_status_v4 and
waypost_store_webhook_v2 (issue 17): a status webhook writes its message once and its status row
once, and closes the AI's job only when it is still open. v3 and v1 stay installed for a rollback
and for code not yet deployed. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0036_reply_fast"}

steps = [
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
