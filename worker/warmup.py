"""A worker warms its pool's connections before it fetches its first job (issue 17), as the web process
does (webhook/warmup.py, where the reason is measured).

Each connection of the pool (at start, and as the pool opens it: waypost/warmup.py) runs a reply's
statements on a made-up turn, in a transaction rolled back: the turn's message stored and its reply job
queued in one statement, as the common webhook does, but on a queue of its own (`waypost-warm-up`, which
no worker takes); the fetch taking that job under a made-up worker, with the run's start
(`fetch_jobs_and_backlog`); the claim with the turn's close (`reply_close_and_claim`) and the send's
record, which ends the job (`record_send`). Nothing is written and nothing is notified; the made-up
phone number id ("0") is no business's. A warm-up that fails or takes more than 10 s is logged and given
up: the worker starts anyway, and its first jobs on that connection pay for it as before.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from psycopg.types.json import Jsonb

from waypost.db import Pool, fetch_all, fetch_one, fetch_optional, fetch_value
from waypost.settings import Settings
from waypost.warmup import WARM_UP_PHONE_NUMBER_ID
from waypost.warmup import warm_up as warm_connections
from worker import job_end, reply_start
from worker.tasks import SEND_REPLY, idempotency_key

logger = logging.getLogger(__name__)

# No worker fetches from it: the only job ever on it is a warm-up's own, never committed.
QUEUE = "waypost-warm-up"
WAMID = "wamid.waypost-warm-up"


async def warm_up(pool: Pool, settings: Settings, connections: int) -> list[int]:
    """Warm `connections` of the pool's connections, each a different one; the backend pids warmed."""
    return await warm_connections(pool, connections, lambda conn: _reply(conn, settings), logger)


async def _reply(conn: Any, settings: Settings) -> None:
    """A reply's statements, in the caller's transaction."""
    now = dt.datetime.now(dt.UTC)
    turn = await fetch_one(
        conn,
        "ingest_inbound_message",
        phone_number_id=WARM_UP_PHONE_NUMBER_ID,
        wa_id="10000000000",
        user_id=None,
        parent_user_id=None,
        username=None,
        contact_name="warm-up",
        new_wa_id=None,
        new_user_id=None,
        wa_message_id=WAMID,
        type="text",
        body="warm-up",
        payload=Jsonb({"type": "text", "text": {"body": "warm-up"}}),
        contact_sent_at=now,
        needs_reply=True,
        request_id="warm-up",
        quiet_seconds=0,
        max_wait_seconds=0,
        reply_task=SEND_REPLY,
        reply_queue=QUEUE,
    )
    job_id = turn["job_id"]
    worker_id = await fetch_value(conn, "warm_up_register_worker")
    params = reply_start.fetch_params(settings)
    [taken] = await fetch_all(conn, "fetch_jobs_and_backlog", queues=[QUEUE], worker_id=worker_id, limit=1, **params)
    if taken["id"] != job_id or not taken["reply_start"]:
        raise RuntimeError("the fetch did not take and start the made-up turn's job")
    claim = await fetch_optional(
        conn,
        "reply_close_and_claim",
        outbound_job_id=turn["outbound_job_id"],
        last_message_id=turn["message_id"],
        conversation_id=turn["conversation_id"],
        idempotency_key=idempotency_key(WAMID),
        author="ai",
        type="text",
        body="warm-up",
        payload=None,
        reply_to_message_id=turn["message_id"],
        stale_after=settings.sending_stale_after,
        grace=settings.unknown_grace_seconds,
    )
    if claim is None:
        raise RuntimeError("the made-up turn's claim found nothing to claim")
    recorded = await fetch_one(
        conn,
        "record_send",
        message_id=claim["message_id"],
        wa_message_id=f"{WAMID}-reply",
        sent_at=now,
        read_conversation_id=turn["conversation_id"],
        read_message_id=turn["message_id"],
        **job_end.JobEnd(job_id, worker_id, delete=False).params(),
    )
    if not (recorded["recorded"] and recorded["job_ended"]):
        raise RuntimeError("the made-up reply's send was not recorded, or did not end its job")
