"""Installs the functions of edits, deletions and phone-app echoes (0016_edits_and_echoes). Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0016_edits_and_echoes"}

FUNCTIONS = (
    ("waypost_apply_message_changes_v1", "text"),
    ("waypost_record_message_change_v1", "bigint, text, text, text, timestamptz"),
    ("waypost_ingest_echo_v1", "text, text, text, text, text, text, jsonb, timestamptz, boolean"),
)

steps = [step(function_source(name), f"DROP FUNCTION IF EXISTS {name}({args})") for name, args in FUNCTIONS]
