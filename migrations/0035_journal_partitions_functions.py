"""Installs waypost_journal_partitions_v1 (the sweep keeps the journal's daily partitions: made ahead,
dropped whole past the retention) and waypost_journal_partition_bounds_v1 (each partition's range),
then makes today's and the next days' partitions at once. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0035_journal_partitions"}

steps = [
    step(
        function_source("waypost_journal_partition_bounds_v1"),
        "DROP FUNCTION IF EXISTS waypost_journal_partition_bounds_v1()",
    ),
    step(
        function_source("waypost_journal_partitions_v1"),
        "DROP FUNCTION IF EXISTS waypost_journal_partitions_v1(interval, integer)",
    ),
    # the sweep makes them from now on (worker/sweep.py, JOURNAL_DAYS_AHEAD); no retention here
    step("DO $$ BEGIN PERFORM waypost_journal_partitions_v1(NULL, 3); END $$"),
]
