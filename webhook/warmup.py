"""A web process warms its pool's connections before it takes traffic (issue 17).

A PostgreSQL session compiles each PL/pgSQL function, plans each of its statements and loads the
catalog entries of each table and index the first time it meets them. On a fresh stack the first
message POSTs took 22, 17 and 16 ms, then 6-7 ms (one per new connection); under mixed traffic the
first 2-3 s of a fresh stack held the most slow acknowledgements of a run. So before the first request,
and on each connection the pool opens later (waypost/warmup.py), each connection runs both webhook
statements (one webhook alone, then two as a group: webhook/group_commit.py) on made-up webhooks of a
message and a status, parsed as any POST is, in a transaction that is rolled back. Nothing is written:
a rolled-back transaction sends no NOTIFY, and leaves only sequence values used. The made-up phone
number id ("0") is no business's, so no real contact's row is touched. Each status is about a made-up
message sent from the phone app (an echo, stored first as the general path stores one), so that a
status's whole way is taken: the message found, its status moved on. A warm-up that fails or takes too
long is logged and given up: it never stops the start, and the first webhooks on that connection pay
for it as before.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

from psycopg.types.json import Jsonb

from waypost.db import DictConnection, Pool, fetch_one
from waypost.warmup import WARM_UP_PHONE_NUMBER_ID
from waypost.warmup import warm_up as warm_connections
from webhook import fastpath, payload
from webhook.group_commit import Event, GroupCommit

logger = logging.getLogger(__name__)


def bodies() -> list[bytes]:
    """Three made-up webhooks, each a text message and a status, as Meta sends them."""
    now = str(int(time.time()))
    made = []
    for n in range(3):
        wa_id = _wa_id(n)
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "0", "phone_number_id": WARM_UP_PHONE_NUMBER_ID},
            "contacts": [{"profile": {"name": "warm-up"}, "wa_id": wa_id}],
            "messages": [
                {
                    "from": wa_id,
                    "id": f"wamid.waypost-warm-up-{n}",
                    "timestamp": now,
                    "type": "text",
                    "text": {"body": "warm-up"},
                }
            ],
            "statuses": [
                {
                    "id": _sent(n),
                    "status": "delivered",
                    "timestamp": now,
                    "recipient_id": wa_id,
                }
            ],
        }
        change = {"value": value, "field": "messages"}
        made.append(json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "0", "changes": [change]}]}))
    return [body.encode() for body in made]


async def warm_up(pool: Pool, webhooks: GroupCommit, connections: int) -> list[int]:
    """Warm `connections` of the pool's connections, each a different one; the backend pids warmed."""
    events = [fastpath.event_of("warm-up", body, "not_checked", payload.parse(body))[0] for body in bodies()]
    return await warm_connections(pool, connections, lambda conn: _webhooks(conn, webhooks, events), logger)


async def _webhooks(conn: DictConnection, webhooks: GroupCommit, events: list[Event]) -> None:
    """The made-up webhooks, each status's message there first, in the caller's transaction."""
    for n in range(len(events)):
        await fetch_one(
            conn,
            "ingest_echo",
            phone_number_id=WARM_UP_PHONE_NUMBER_ID,
            wa_id=_wa_id(n),
            user_id=None,
            wa_message_id=_sent(n),
            type="text",
            body="warm-up",
            payload=Jsonb({"type": "text", "text": {"body": "warm-up"}}),
            sent_at=dt.datetime.now(dt.UTC),
            pause_ai=False,
        )
    rows = await webhooks.warm(conn, events)
    if [row["status_outcomes"] for row in rows] != [["applied"]] * len(events):
        raise RuntimeError(f"the made-up statuses were not applied: {[row['status_outcomes'] for row in rows]}")


def _wa_id(n: int) -> str:
    return f"1000000000{n}"


def _sent(n: int) -> str:
    return f"wamid.waypost-warm-up-sent-{n}"
