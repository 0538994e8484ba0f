"""Installs waypost_start_reply_v1 (issue 17): a reply run claims its job and reads the conversation, the
turn's messages, the send already claimed, an opt-out or opt-in word, the AI's replies in a row and
whether a file waits, in one round trip instead of six. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0035_journal_partitions_functions"}

steps = [
    step(
        function_source("waypost_start_reply_v1"),
        "DROP FUNCTION IF EXISTS waypost_start_reply_v1(bigint, text, boolean)",
    ),
]
