"""Everything stored about one contact: export it (JSON, readable HTML) or erase it.

A contact is named by one identifier, their phone number (wa_id) or their BSUID; the database
follows it to every conversation they had (live, deleted, merged away after a BSUID or number
change) and every other identifier those carry (`waypost_contact_identifiers_v1`). Erasing runs
`waypost_erase_contact_v1` and, for files in S3, deletes the objects before the transaction
commits: if the store does not answer, nothing is erased and the erase can be run again.
Used by `waypost contact export|erase` and by the inbox.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import logging
from typing import Any

from psycopg import AsyncConnection, errors

from waypost.db import fetch_all, fetch_one, fetch_optional
from waypost.errors import Conflict, MediaStoreUnavailable, NotFound
from waypost.media_store import MediaStore

logger = logging.getLogger(__name__)

# Sections of an export, in the order the HTML shows them: (key, query, heading).
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("conversations", "contact_conversations", "Conversations"),
    ("messages", "contact_messages", "Messages"),
    ("media", "contact_media", "Files"),
    ("statuses", "contact_statuses", "Delivery statuses"),
    ("message_changes", "contact_message_changes", "Edits and deletions"),
    ("notifications", "contact_notifications", "Operator notes and notifications"),
)


@dataclasses.dataclass(frozen=True)
class Erasure:
    erasure_id: int
    counts: dict[str, int]


async def identifier_of_conversation(conn: AsyncConnection[Any], conversation_id: int) -> str:
    row = await fetch_optional(conn, "contact_of_conversation", conversation_id=conversation_id)
    if row is None:
        raise NotFound.of("conversation")
    return str(row["identifier"])


async def export(conn: AsyncConnection[Any], identifier: str) -> dict[str, Any]:
    """The contact's data as plain JSON-able values (times as ISO 8601 strings)."""
    found = await fetch_one(conn, "contact_find", identifier=identifier)
    conversation_ids = list(found["conversation_ids"])
    if not conversation_ids:
        raise NotFound.of("contact")
    data: dict[str, Any] = {
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "identifiers": list(found["identifiers"]),
    }
    for key, query, _ in SECTIONS:
        params: dict[str, Any] = {"conversation_ids": conversation_ids}
        if key == "statuses":
            params["identifiers"] = data["identifiers"]
        data[key] = [plain(row) for row in await fetch_all(conn, query, **params)]
    return data


def plain(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in row.items()}


def as_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return html.escape(str(value))


def as_html(data: dict[str, Any], media_url: str | None = None) -> str:
    """A readable page; every value escaped, files listed (with a link when `media_url`, a format
    string taking the media id, is given), never inlined."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Contact data</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;vertical-align:top;font-size:13px}</style></head><body>",
        "<h1>Contact data</h1>",
        f"<p>Identifiers: {_cell(', '.join(data['identifiers']))}. Exported {_cell(data['exported_at'])}.</p>",
    ]
    for key, _, heading in SECTIONS:
        rows = data[key]
        parts.append(f"<h2>{html.escape(heading)} ({len(rows)})</h2>")
        if not rows:
            continue
        columns = list(rows[0])
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>")
        for row in rows:
            cells = [_cell(row[c]) for c in columns]
            if key == "media" and media_url is not None:
                cells[0] = f"<a href='{html.escape(media_url.format(row['id']))}' download>{cells[0]}</a>"
            parts.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


async def erase(
    conn: AsyncConnection[Any], identifier: str, erased_by: str, store: MediaStore | None = None
) -> Erasure:
    """Erase the contact in one transaction on `conn`; NotFound when nothing names them, and
    MediaStoreUnavailable (nothing erased) when their files in S3 cannot be deleted."""
    try:
        async with conn.transaction():
            result = await _erase(conn, identifier, erased_by, store)
    except errors.LockNotAvailable as exc:  # a send to the contact is in flight (the function says so)
        raise Conflict(exc.diag.message_primary or "a message to this contact is being sent") from None
    counts = {table: int(n) for table, n in result["counts"].items()}
    logger.info("erasure %s by %s: %s", result["erasure_id"], erased_by, counts)
    return Erasure(int(result["erasure_id"]), counts)


async def _erase(conn: AsyncConnection[Any], identifier: str, erased_by: str, store: MediaStore | None) -> Any:
    """The function's result, once the contact's S3 objects are gone (the caller's transaction commits)."""
    result = (await fetch_one(conn, "contact_erase", identifier=identifier, erased_by=erased_by))["result"]
    objects = [(int(media_id), bucket, key) for media_id, bucket, key in result["objects"]]
    if objects:
        if store is None or store.s3 is None:
            raise MediaStoreUnavailable("the contact's files are in S3, which WAYPOST_MEDIA_STORE_URL does not name")
        deleted = await store.s3.delete(objects)
        if len(set(deleted)) < len(objects):
            raise MediaStoreUnavailable(f"{len(objects) - len(set(deleted))} file(s) could not be deleted from S3")
    if result["erasure_id"] is None:
        raise NotFound.of("contact")
    return result
