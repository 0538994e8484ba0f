"""Installs waypost_queue_operator_message_v3 (0021_templates): an operator's template send, allowed
outside the 24-hour window, refused for a template not approved or a marketing one to an opted-out
contact. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0021_templates"}

steps = [
    step(
        function_source("waypost_queue_operator_message_v3"),
        "DROP FUNCTION IF EXISTS waypost_queue_operator_message_v3(bigint, text, text, text, jsonb, bigint, bigint,"
        " boolean, interval)",
    )
]
