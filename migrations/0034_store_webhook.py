"""Installs waypost_store_webhook_v1: a webhook of plain inbound messages and statuses stored, its
reply jobs queued and its journal row written in one statement (issue 17: one round trip and one
commit per acknowledgement). Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0033_handover_worker"}

steps = [
    step(
        function_source("waypost_store_webhook_v1"),
        "DROP FUNCTION IF EXISTS waypost_store_webhook_v1(text, bytea, bytea, text, jsonb, jsonb, interval,"
        " interval, text, text)",
    ),
]
