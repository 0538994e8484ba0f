"""Installs waypost_claim_send_v2: an outbound message of any WhatsApp type (text, media,
interactive, reaction) claimed with its Graph payload. v1 stays for a worker of the previous release
still running during a deploy. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0012_media"}

steps = [
    step(
        function_source("waypost_claim_send_v2"),
        "DROP FUNCTION IF EXISTS waypost_claim_send_v2"
        "(bigint, text, text, text, text, jsonb, bigint, interval, interval)",
    ),
]
