"""The worker's fetch takes up to as many jobs as it has free slots, in one statement (issue 17):
waypost_fetch_jobs_v1 (sql/functions/waypost_fetch_jobs_v1.sql says why). Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0045_finish_reply_job_by_key"}

steps = [
    step(
        function_source("waypost_fetch_jobs_v1"),
        "DROP FUNCTION IF EXISTS waypost_fetch_jobs_v1(character varying[], bigint, integer)",
    ),
]
