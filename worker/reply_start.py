"""A reply run's start in one round trip (issue 17): `waypost_start_reply_v2` claims the outbound job and
reads what the run decides from, the history the AI reads included. Before, the same took seven pool
checkouts and as many transactions: the job's start, the conversation with the turn and the send
already claimed, the opt-out word, the budget's empty transaction, the AI's replies in a row, the
files' lock and the history.

And the worker's fetch makes the same start in the statement that takes the job (sql/queries.sql
`fetch_jobs_and_backlog`, waypost_try_start_reply_v1), one more round trip and commit less: WaypostWorker
hands the run its rows through the job's context (`of`), as JSON. A job the fetch did not start (its
row was locked, or the start raised there; a plain procrastinate worker) starts here, as before."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import procrastinate

from waypost.db import Pool, autocommit, fetch_all, fetch_optional
from waypost.settings import Settings
from worker.rows import Conversation, Inbound, OutboundJob
from worker.tasks import SEND_REPLY, idempotency_key
from worker.turns import TurnMessages

KEY_PREFIX = idempotency_key("")  # the SQL adds the first message's wamid (and cuts at 512, as here)
KEY = "waypost.reply_start"  # the rows the fetch's start gave, in the job's additional_context
# The most reply jobs one fetch starts: each start is a subtransaction that writes, and a transaction
# with more than PostgreSQL's PGPROC_MAX_CACHED_SUBXIDS (64) of them overflows its subtransaction cache,
# which slows every other session's snapshot checks while it lasts. The jobs after these start on their
# own. No margin: a start (waypost_try_start_reply_v1) holds one exception block, and nothing it calls
# another; one more on that path would need this lowered.
MAX_STARTS = 64
# the start's timestamp columns: JSON gives them as text
TIMESTAMPS = ("created_at", "deleted_at", "last_inbound_at", "contact_sent_at", "message_created_at", "revoked_at")


@dataclasses.dataclass(frozen=True)
class ReplyStart:
    job: OutboundJob
    conversation: Conversation
    turn: TurnMessages
    existing: dict[str, Any] | None  # the send claimed for the turn's key (`reply_find_send`'s row)
    consent: dict[str, Any] | None  # the newest opt-out or opt-in word (`consent_keyword_of_message`'s row)
    ai_replies: int | None  # the AI's replies in a row (None: WAYPOST_HANDOVER_AFTER_AI_REPLIES is 0)
    has_media: bool  # a message of the turn has a file: the reply may have to wait for it
    # what the AI reads, newest first, ending with the turn's newest live message: rows of
    # waypost_reply_history_v1, read in the same statement
    history: tuple[dict[str, Any], ...]
    knowledge_base: bool  # the knowledge base held a passage: an empty one is not searched


def start_params(settings: Settings) -> dict[str, Any]:
    """The start's parameters that come from the settings."""
    return {
        "key_prefix": KEY_PREFIX,
        "count_ai_replies": settings.handover_after_ai_replies > 0,
        "history_limit": settings.history_messages,
    }


def fetch_params(settings: Settings | None) -> dict[str, Any]:
    """`fetch_jobs_and_backlog`'s parameters for the reply jobs' start (none without settings)."""
    if settings is None:
        return {
            "reply_task": None,
            "key_prefix": None,
            "count_ai_replies": None,
            "history_limit": None,
            "max_starts": None,
        }
    return {"reply_task": SEND_REPLY, **start_params(settings), "max_starts": MAX_STARTS}


def in_utc(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The start's rows with their timestamps in UTC, whichever way they came: datetimes in the session's
    time zone from the start's statement, ISO text at a fixed offset from the fetch's JSON. One zone for
    both, so what a run reckons from them (the 24-hour window, its retry budget) is the same either way."""
    return [{key: _utc(value) if key in TIMESTAMPS else value for key, value in row.items()} for row in rows]


def _utc(value: dt.datetime | str | None) -> dt.datetime | None:
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(dt.UTC)


def of(context: procrastinate.JobContext, outbound_job_id: int) -> list[dict[str, Any]] | None:
    """The rows (JSON) the fetch's start gave for this run's job, or None when the fetch did not start it."""
    rows = context.additional_context.get(KEY)
    if isinstance(rows, list) and all(
        isinstance(row, dict) and str(row.get("id")) == str(outbound_job_id) for row in rows
    ):
        return rows
    return None


async def start(
    pool: Pool, settings: Settings, outbound_job_id: int, fetched: list[dict[str, Any]] | None = None
) -> ReplyStart | None:
    """Claim the job and read the turn, unless the fetch did (`fetched`: its rows, as JSON); None when
    the job is not open (finished or gathering)."""
    if fetched is None:
        async with autocommit(pool) as conn:  # the claim commits as its statement ends
            rows = await fetch_all(conn, "reply_start", outbound_job_id=outbound_job_id, **start_params(settings))
    else:
        rows = fetched
    if not rows:
        return None
    rows = in_utc(rows)
    first = rows[0]
    job = OutboundJob(**{field.name: first[field.name] for field in dataclasses.fields(OutboundJob)})
    messages = tuple(
        Inbound(
            id=row["message_id"],
            wa_message_id=row["wa_message_id"],
            type=row["type"],
            body=row["body"],
            contact_sent_at=row["contact_sent_at"],
            created_at=row["message_created_at"],
            revoked_at=row["revoked_at"],
        )
        for row in rows
        if row["message_id"] is not None
    )
    turn = TurnMessages(messages, job.last_message_id or job.inbound_message_id)
    existing = None
    if first["send_id"] is not None:
        existing = {"id": first["send_id"], "status": first["send_status"], "body": first["send_body"]}
        existing["type"] = first["send_type"]
    if messages and first["send_key"] != turn.key:  # never, unless the key's shape changes: ask by key
        async with autocommit(pool) as conn:
            existing = await fetch_optional(conn, "reply_find_send", idempotency_key=turn.key)
    conversation = Conversation(
        id=job.conversation_id,
        **{field.name: first[field.name] for field in dataclasses.fields(Conversation) if field.name != "id"},
    )
    consent = None
    if first["consent_kind"] is not None:
        consent = {"kind": first["consent_kind"], "type": first["consent_type"], "body": first["consent_body"]}
    history = tuple(first["history"] or ())
    return ReplyStart(
        job,
        conversation,
        turn,
        existing,
        consent,
        first["ai_replies"],
        first["has_media"],
        history,
        first["knowledge_base"],
    )
