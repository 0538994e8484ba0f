"""Webhooks that arrive together are stored together (issue 17): waypost_store_webhooks_v1 stores several
in one statement and one commit, each as waypost_store_webhook_v3 does (webhook/group_commit.py).
Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0041_inbox_notify_lean"}

steps = [
    step(
        function_source("waypost_store_webhooks_v1"),
        "DROP FUNCTION IF EXISTS waypost_store_webhooks_v1(text[], bytea[], bytea[], text[], jsonb[], jsonb[],"
        " interval, interval, text, text)",
    ),
]
