"""A reply's job closed through its unique inbound message (issue 17): waypost_finish_reply_job_v2 and
waypost_record_send_v2, which calls it (sql/functions/waypost_finish_reply_job_v2.sql says why). The v1
functions stay installed for a rollback and for code not yet deployed (waypost_apply_message_status_v4
still calls waypost_finish_reply_job_v1, only when a status arrives before the send's record).
Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0044_messages_sent_index"}

steps = [
    step(
        function_source("waypost_finish_reply_job_v2"),
        "DROP FUNCTION IF EXISTS waypost_finish_reply_job_v2(bigint)",
    ),
    step(
        function_source("waypost_record_send_v2"),
        "DROP FUNCTION IF EXISTS waypost_record_send_v2(bigint, text, timestamptz)",
    ),
]
