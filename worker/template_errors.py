"""What a template send's refusal tells about the template itself: Meta's 132015 (paused) and 132016
(disabled) mean the stored APPROVED status is out of date. The row is corrected in the transaction
that fails the message, so the inbox stops offering the template at once rather than at the next
sync or status webhook (docs/whatsapp.md "Message templates")."""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection

from waypost.db import fetch_optional
from worker.graph import SendFailed
from worker.rows import Claim

logger = logging.getLogger(__name__)

STATUS_OF_CODE = {132015: "PAUSED", 132016: "DISABLED"}


async def note_refusal(conn: AsyncConnection[Any], claim: Claim, failure: SendFailed) -> str | None:
    """Mark the claimed template PAUSED or DISABLED when Meta refused it as such; the new status."""
    status = STATUS_OF_CODE.get(failure.code or 0)
    payload = claim.payload or {}
    language = payload.get("language")
    if claim.type != "template" or status is None or not isinstance(language, dict):
        return None
    name, code = payload.get("name"), language.get("code")
    if not isinstance(name, str) or not isinstance(code, str):
        return None
    if await fetch_optional(conn, "template_refused_by_meta", status=status, name=name, language=code) is None:
        return None  # not stored, or no longer APPROVED
    logger.warning(
        "template %s/%s marked %s: Meta refused message %s with %s", name, code, status, claim.message_id, failure.code
    )
    return status
