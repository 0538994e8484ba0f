"""The task facade: what the web side (and the sweep) need to queue work, and nothing more.

Task and queue names, the per-conversation lock, the idempotency keys, and the defer-and-link
helpers. Jobs are deferred by task NAME (procrastinate's `configure_task`), so importing this module
loads neither the task modules nor the Graph client, the orchestrator or the worker: `webhook/`
imports nothing else from `worker/` (tests/test_lint.py). The task functions register themselves
on the App (`worker.queue`); the retry policy is theirs, applied by the worker that runs the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from procrastinate import PsycopgConnector
from procrastinate.manager import JobManager
from procrastinate.tasks import configure_task
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from waypost.db import execute
from waypost.settings import Settings

if TYPE_CHECKING:
    from waypost.media_store import MediaStore
    from worker.sweep import SweepReport

# Task names are a contract with the database too: sql/queries.sql (sweep_orphan_operator_messages)
# names SEND_OPERATOR_MESSAGE, and the queue rows keep them across deployments.
SEND_REPLY = "send_reply"
SEND_OPERATOR_MESSAGE = "send_operator_message"
SWEEP = "sweep"
DOWNLOAD_MEDIA = "download_media"
TRANSCRIBE_MEDIA = "transcribe_media"  # sql/media_text.sql (sweep_stuck_media) names both media tasks
CHANGE_BLOCK = "change_block"  # an operator's block or unblock (worker/consent.py)
SUBMIT_TEMPLATE = "submit_template"  # a template drafted in the inbox, to Meta (worker/template_drafts.py)
READ_RECEIPT = "read_receipt"  # mark a message read once an operator opened it (worker/receipts.py)

REPLY_QUEUE = "replies"
MAINTENANCE_QUEUE = "maintenance"
# Downloads take no conversation lock: a slow file never holds up the conversation's replies.
MEDIA_QUEUE = "media"


def conversation_lock(conversation_id: int) -> str:
    """procrastinate lock serialising the sends of one conversation, in order (the operator views
    in migrations/0008_operator_views.sql parse it back)."""
    return f"conversation:{conversation_id}"


def idempotency_key(inbound_wa_message_id: str) -> str:
    """One reply per inbound message; also sent as biz_opaque_callback_data (max 512 chars)."""
    return f"reply:{inbound_wa_message_id}"[:512]


def operator_key(client_key: str) -> str:
    """The idempotency key of an operator message, from the key the compose form generated."""
    return f"operator:{client_key}"[:512]


# Defers only ever run on the caller's connection (its transaction commits the job with the rows
# that need it), so this connector is never opened and holds no pool.
_on_callers_connection = JobManager(PsycopgConnector())


async def _defer(conn: AsyncConnection[Any], task: str, queue: str, lock: str | None, **task_kwargs: int | str) -> int:
    # Exactly what the task's own `configure(connection=..., lock=...)` wrote: its name, its queue,
    # the lock, no queueing lock, the default priority.
    deferrer = configure_task(name=task, job_manager=_on_callers_connection, connection=conn, lock=lock, queue=queue)
    return await deferrer.defer_async(**task_kwargs)


async def defer_reply(
    conn: AsyncConnection[Any], *, outbound_job_id: int, conversation_id: int, request_id: str, link: bool = True
) -> int:
    """Queue the reply of an outbound job and link the job to it, in the caller's transaction (with
    `link=False` the caller links it, in the one update it makes of the job's row)."""
    job_id = await _defer(
        conn,
        SEND_REPLY,
        REPLY_QUEUE,
        conversation_lock(conversation_id),
        outbound_job_id=outbound_job_id,
        request_id=request_id,
    )
    if link:
        await execute(
            conn, "outbound_job_set_procrastinate_id", outbound_job_id=outbound_job_id, procrastinate_job_id=job_id
        )
    return job_id


async def requeue_reply(conn: AsyncConnection[Any], job: Mapping[str, Any], update: str) -> int:
    """Queue the reply of `job` (an outbound_jobs row the caller locked: id, conversation_id,
    request_id) and run the named query `update` (given outbound_job_id and procrastinate_job_id) as
    the one update of its row in the caller's transaction. A second update of the row in one
    transaction would re-check its conversation_id, locking the conversation while holding the job:
    a deadlock with a message being stored, which holds the conversation and waits for its turn."""
    ids = {"outbound_job_id": job["id"], "conversation_id": job["conversation_id"]}
    job_id = await defer_reply(conn, **ids, request_id=job["request_id"], link=False)
    await execute(conn, update, outbound_job_id=job["id"], procrastinate_job_id=job_id)
    return job_id


async def defer_operator_send(
    conn: AsyncConnection[Any], *, message_id: int, conversation_id: int, request_id: str
) -> int:
    """Queue the send of an operator message, in the caller's transaction (the sweep finds the job
    by its `message_id` argument: no link is written)."""
    return await _defer(
        conn,
        SEND_OPERATOR_MESSAGE,
        REPLY_QUEUE,
        conversation_lock(conversation_id),
        message_id=message_id,
        request_id=request_id,
    )


async def defer_download(conn: AsyncConnection[Any], *, media_id: int, request_id: str) -> int:
    """Queue the download of an inbound media file, in the caller's transaction (the webhook's: the
    message and its download commit together, and the download never runs inside the request)."""
    return await _defer(conn, DOWNLOAD_MEDIA, MEDIA_QUEUE, None, media_id=media_id, request_id=request_id)


async def defer_transcription(conn: AsyncConnection[Any], *, media_id: int, request_id: str) -> int:
    """Queue the transcription of a stored voice note, in the caller's transaction (the download's)."""
    return await _defer(conn, TRANSCRIBE_MEDIA, MEDIA_QUEUE, None, media_id=media_id, request_id=request_id)


async def defer_block(conn: AsyncConnection[Any], *, block_request_id: int, request_id: str) -> int:
    """Queue an operator's block or unblock, in the caller's transaction (the request row's)."""
    return await _defer(conn, CHANGE_BLOCK, REPLY_QUEUE, None, block_request_id=block_request_id, request_id=request_id)


async def defer_template_submission(conn: AsyncConnection[Any], *, draft_id: int, request_id: str) -> int:
    """Queue the submission of a drafted template to Meta, in the caller's transaction (the draft's)."""
    return await _defer(conn, SUBMIT_TEMPLATE, REPLY_QUEUE, None, draft_id=draft_id, request_id=request_id)


async def defer_read_receipt(conn: AsyncConnection[Any], *, message_id: int, request_id: str) -> int:
    """Queue the call marking a message read on the contact's phone, in the caller's transaction (the
    one that claimed it). No conversation lock: it never waits behind a reply being written."""
    return await _defer(conn, READ_RECEIPT, REPLY_QUEUE, None, message_id=message_id, request_id=request_id)


async def sweep_now(pool: AsyncConnectionPool[Any], settings: Settings, media_store: MediaStore) -> SweepReport:
    """The sweep, run by the cron endpoint on the web app's pool and media store."""
    # Imported here, not above: worker.sweep defers through this module.
    from worker.sweep import sweep

    connector = PsycopgConnector()
    await connector.open_async(pool=pool)  # the web app's pool, not a second one
    return await sweep(pool, settings, JobManager(connector), media_store)
