"""Installs waypost_ingest_inbound_message_v3 (0031_turns): an inbound message joins its conversation's
open turn within the quiet window, or starts one; and waypost_apply_message_changes_v2: an edit or a
deletion finds the message's reply through its turn. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0031_turns"}

steps = [
    step(
        function_source("waypost_ingest_inbound_message_v3"),
        "DROP FUNCTION IF EXISTS waypost_ingest_inbound_message_v3(text, text, text, text, text, text, text, text,"
        " text, text, text, jsonb, timestamptz, boolean, text, interval, interval)",
    ),
    step(
        function_source("waypost_apply_message_changes_v2"),
        "DROP FUNCTION IF EXISTS waypost_apply_message_changes_v2(text)",
    ),
    step(
        function_source("waypost_record_message_change_v2"),
        "DROP FUNCTION IF EXISTS waypost_record_message_change_v2(bigint, text, text, text, timestamptz)",
    ),
]
