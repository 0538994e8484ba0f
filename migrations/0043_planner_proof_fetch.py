"""The worker's job fetch with plans that the statistics cannot spoil (issue 17): the expression index
procrastinate_jobs_lock_queue_idx (a job's lock while it is todo or doing), built CONCURRENTLY so that
defers go on during the build, and waypost_fetch_job_v1, which checks each candidate's lock through it
(sql/functions/waypost_fetch_job_v1.sql says why). Not transactional (CREATE INDEX CONCURRENTLY cannot
run in a transaction); re-runnable: an index left invalid by an interrupted build is dropped and built
again. SQL in sql/indexes.sql."""

from typing import Any

from yoyo import step

from waypost.schema import build_index_concurrently, drop_index_concurrently
from waypost.sql import function_source

__depends__ = {"0042_webhook_group_commit"}
__transactional__ = False


INDEX = "procrastinate_jobs_lock_queue_idx"


def build_index(conn: Any) -> None:
    build_index_concurrently(conn, INDEX)


def drop_index(conn: Any) -> None:
    drop_index_concurrently(conn, INDEX)


steps = [
    step(build_index, drop_index),
    step(
        function_source("waypost_fetch_job_v1"),
        "DROP FUNCTION IF EXISTS waypost_fetch_job_v1(character varying[], bigint)",
    ),
]
