"""Installs contact resolution by phone number or BSUID, and ingest v2 replacing v1. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0006_contact_identifiers"}

FUNCTIONS = (
    ("waypost_merge_conversations_v1", "bigint, bigint"),
    ("waypost_resolve_conversation_v1", "text, text, text, text, text, text, timestamptz"),
    ("waypost_change_contact_identifiers_v1", "bigint, text, text"),
    (
        "waypost_ingest_inbound_message_v2",
        "text, text, text, text, text, text, text, text, text, text, text, jsonb, timestamptz, boolean, text",
    ),
)

steps = [
    *(step(function_source(name), f"DROP FUNCTION IF EXISTS {name}({args})") for name, args in FUNCTIONS),
    step(
        "DROP FUNCTION IF EXISTS waypost_ingest_inbound_message_v1("
        "text, text, text, text, text, text, jsonb, timestamptz, boolean, text)",
        function_source("waypost_ingest_inbound_message_v1"),
    ),
]
