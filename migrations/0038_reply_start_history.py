"""Installs waypost_reply_history_v1 (what the AI reads of a conversation, the `reply_history` query
until now) and waypost_start_reply_v2, which returns that history with the reply run's start: one
statement less per reply (issue 17). waypost_start_reply_v1 stays installed for a rollback and for code
not yet deployed. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0037_write_once"}

steps = [
    step(
        function_source("waypost_reply_history_v1"),
        "DROP FUNCTION IF EXISTS waypost_reply_history_v1(bigint, bigint, integer)",
    ),
    step(
        function_source("waypost_start_reply_v2"),
        "DROP FUNCTION IF EXISTS waypost_start_reply_v2(bigint, text, boolean, integer)",
    ),
]
