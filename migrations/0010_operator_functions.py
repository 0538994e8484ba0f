"""Installs the operator send function. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0009_operator_inbox"}

steps = [
    step(
        function_source("waypost_queue_operator_message_v1"),
        "DROP FUNCTION IF EXISTS waypost_queue_operator_message_v1(bigint, text, text, bigint, boolean, interval)",
    ),
]
