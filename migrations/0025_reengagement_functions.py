"""Installs waypost_queue_reengagement_v1 (0025_reengagement): the re-engagement template an AI reply
sends instead of skipping when its 24-hour window has closed (WAYPOST_REENGAGE_TEMPLATE). Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0024_template_drafts"}

steps = [
    step(
        function_source("waypost_queue_reengagement_v1"),
        "DROP FUNCTION IF EXISTS waypost_queue_reengagement_v1(bigint, bigint, text, text, jsonb, integer,"
        " timestamptz)",
    )
]
