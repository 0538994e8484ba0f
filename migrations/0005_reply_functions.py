"""Installs the send functions: claim, record, fail; and apply_message_status v2, replacing v1.

Re-runnable (CREATE OR REPLACE, DROP IF EXISTS), as `waypost migrate` expects of our migrations.
"""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0004_reply_sending"}

FUNCTIONS = (
    ("waypost_finish_reply_job_v1", "bigint"),
    ("waypost_notify_send_failed_v1", "bigint, jsonb"),
    ("waypost_apply_message_status_v2", "text, text, timestamptz, text, text, jsonb, jsonb"),
    ("waypost_claim_send_v1", "bigint, text, text, text, bigint, interval, interval"),
    ("waypost_record_send_v1", "bigint, text, timestamptz"),
    ("waypost_fail_send_v1", "bigint, jsonb, text"),
)

steps = [
    *(step(function_source(name), f"DROP FUNCTION IF EXISTS {name}({args})") for name, args in FUNCTIONS),
    step(
        "DROP FUNCTION IF EXISTS waypost_apply_message_status_v1(text, text, timestamptz, text, text, jsonb, jsonb)",
        function_source("waypost_apply_message_status_v1"),
    ),
]
