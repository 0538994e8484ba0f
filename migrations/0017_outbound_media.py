"""Outbound media: an operator's (or the AI's) file is a `media` row of its outbound message, its bytes
in media_chunks; `wa_media_id` is empty until the worker has uploaded it to Meta's media endpoint,
then holds the id Meta returned (kept 30 days by Meta: a retry sends it again without a new upload).
Installs waypost_queue_operator_message_v2 (any kind, a reply-to). v1 stays for a web process of the
previous release still running during a deploy. Re-runnable."""

from yoyo import step

from waypost.sql import function_source

__depends__ = {"0016_edits_and_echoes_functions"}

TABLES = """
ALTER TABLE media ALTER COLUMN wa_media_id DROP NOT NULL;
ALTER TABLE media
    -- when an outbound file was uploaded to Meta (its id is then wa_media_id)
    ADD COLUMN IF NOT EXISTS uploaded_at timestamptz;
"""

DROP_TABLES = """
ALTER TABLE media DROP COLUMN IF EXISTS uploaded_at;
UPDATE media SET wa_media_id = '' WHERE wa_media_id IS NULL;
ALTER TABLE media ALTER COLUMN wa_media_id SET NOT NULL;
"""

steps = [
    step(TABLES, DROP_TABLES),
    step(
        function_source("waypost_queue_operator_message_v2"),
        "DROP FUNCTION IF EXISTS waypost_queue_operator_message_v2"
        "(bigint, text, text, text, jsonb, bigint, bigint, boolean, interval)",
    ),
]
