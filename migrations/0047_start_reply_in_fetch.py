"""The worker's fetch starts each reply job it takes, in the same statement (issue 17):
waypost_try_start_reply_v1 (sql/functions/waypost_try_start_reply_v1.sql says why). Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0046_fetch_jobs"}

steps = [
    step(
        function_source("waypost_try_start_reply_v1"),
        "DROP FUNCTION IF EXISTS waypost_try_start_reply_v1(jsonb, text, boolean, integer)",
    ),
]
