"""The durable floor: pywa's server plus the least a durable acknowledgement must do, for bench/pywa_side.py.

    .venv/bin/python -m bench.durable_floor web --port 8091 --database-url URL
    .venv/bin/python -m bench.durable_floor worker --graph http://127.0.0.1:8081 --database-url URL

Issue 17 asks for pywa's speed with Waypost's guarantees. This contender keeps only the guarantee's own
cost: the web process (a Starlette route under uvicorn, as pywa's server and `waypost serve` run) checks the
signature and commits one row (`bench_floor_store`: at once the journal, the message and its reply's job,
the wamid its idempotency key, a NOTIFY at commit) before the 200; the worker (uvloop, one LISTEN
connection, 10 replies at once as `waypost worker`) claims a row, sends the reply over aiohttp (the client
Waypost's replies use) and records it. No conversation, turn, history, orchestrator, read receipt, inbox
event or procrastinate: what it measures is what any design that commits before the 200 and replies from
another process pays on this machine, with nothing of Waypost's own. A status webhook is one statement
too (`bench_floor_status`: the status row, and the reply's latest status). bench/pywa_side.py (--floor)
runs it beside pywa, and bench/mixed.py (--floor) drives mixed traffic at it (`serving`). Its figures
beside pywa's say how much of the gap a design inside the guarantees can close at all. Not a product: it
keeps none of the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import uvicorn
import uvloop
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from bench.common import ACCESS_TOKEN, SECRET, Stack
from bench.pywa_bot import ENDPOINT, VERIFY_TOKEN, answer
from waypost.db import connect_sync, execute, execute_sync, fetch_optional, fetch_optional_sync
from waypost.devtools.net import answers, free_port
from waypost.devtools.processes import poll, stop_processes
from waypost.logs import setup_logging

CHALLENGE = f"{ENDPOINT}?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=ok"
BODY_LIMIT = 1 << 20
CONCURRENCY = 10  # `waypost worker`'s default
API_VERSION = "v25.0"


def web(database_url: str) -> Starlette:
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        database_url, min_size=4, max_size=10, kwargs={"autocommit": True}, open=False
    )

    async def challenge(request: Request) -> Response:
        ok = request.query_params.get("hub.verify_token") == VERIFY_TOKEN
        return PlainTextResponse(request.query_params.get("hub.challenge", "") if ok else "", 200 if ok else 403)

    async def receive(request: Request) -> Response:
        body = await request.body()
        if len(body) > BODY_LIMIT:
            return Response(status_code=413)
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
            return Response(status_code=401)
        value = json.loads(body)["entry"][0]["changes"][0]["value"]
        async with pool.connection() as conn:
            for message in value.get("messages", []):
                await execute(
                    conn,
                    "bench_floor_store",
                    wamid=message["id"],
                    phone_number_id=value["metadata"]["phone_number_id"],
                    wa_id=message["from"],
                    body=message.get("text", {}).get("body", ""),
                )
            for status in value.get("statuses", []):
                await execute(conn, "bench_floor_status", reply_wamid=status["id"], status=status["status"])
        return Response(status_code=200)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with pool:
            yield

    return Starlette(
        routes=[Route(ENDPOINT, challenge, methods=["GET"]), Route(ENDPOINT, receive, methods=["POST"])],
        lifespan=lifespan,
    )


async def worker(database_url: str, graph: str) -> None:
    text = answer()
    wake = asyncio.Event()
    async with (
        AsyncConnectionPool(database_url, min_size=CONCURRENCY, kwargs={"autocommit": True}) as pool,
        aiohttp.ClientSession(graph, headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}) as http,
        await AsyncConnection.connect(database_url, autocommit=True) as listener,
    ):

        async def reply_all() -> None:
            while True:
                async with pool.connection() as conn:
                    row = await fetch_optional(conn, "bench_floor_claim")
                if row is None:
                    return
                send = {
                    "messaging_product": "whatsapp",
                    "to": row["wa_id"],
                    "type": "text",
                    "text": {"body": text},
                    "context": {"message_id": row["wamid"]},
                }
                async with http.post(f"/{API_VERSION}/{row['phone_number_id']}/messages", json=send) as answered:
                    answered.raise_for_status()
                    reply_wamid = (await answered.json())["messages"][0]["id"]
                async with pool.connection() as conn:
                    await execute(conn, "bench_floor_sent", id=row["id"], reply_wamid=reply_wamid)

        async def listen() -> None:
            await execute(listener, "bench_floor_listen")
            wake.set()  # what was stored before the LISTEN
            async for _ in listener.notifies():
                wake.set()

        listening = asyncio.create_task(listen())
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                await wake.wait()
                wake.clear()
                # one more replier per wake, up to CONCURRENCY: each drains until nothing is new
                if len(running) < CONCURRENCY:
                    task = asyncio.create_task(reply_all())
                    running.add(task)
                    task.add_done_callback(running.discard)
        finally:
            listening.cancel()


def commands(running: Stack, port: int) -> list[list[str]]:
    """The floor's web process (on `port`) and worker, on the stack's database and fake Graph API."""
    database = ["--database-url", running.database_url]
    return [
        [sys.executable, "-m", "bench.durable_floor", "web", "--port", str(port), *database],
        [sys.executable, "-m", "bench.durable_floor", "worker", "--graph", running.graph, *database],
    ]


def create(database_url: str) -> None:
    """Its tables, before its processes start."""
    with connect_sync(database_url, autocommit=True) as conn:
        execute_sync(conn, "bench_floor_create")


def wait_ready(database_url: str, url: str) -> None:
    """Until its web process answers the webhook challenge and its worker LISTENs."""
    poll(lambda: answers(url + CHALLENGE), timeout=30, what="the floor's web process did not answer")
    with connect_sync(database_url, autocommit=True) as conn:
        listening = lambda: fetch_optional_sync(conn, "bench_floor_listening") is not None  # noqa: E731
        poll(listening, timeout=30, what="the floor's worker did not start listening")


def open_work(database_url: str) -> bool:
    """Whether a stored message still waits for its reply."""
    with connect_sync(database_url, autocommit=True) as conn:
        return fetch_optional_sync(conn, "bench_floor_open") is not None


@contextlib.contextmanager
def serving(running: Stack) -> Iterator[str]:
    """The floor beside the stack, its web process's URL while the block runs (bench/mixed.py --floor)."""
    create(running.database_url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    processes = [subprocess.Popen(command) for command in commands(running, port)]
    try:
        wait_ready(running.database_url, url)
        yield url
    finally:
        stop_processes(processes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("web", "worker"))
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--graph", default="")
    args = parser.parse_args()
    setup_logging("WARNING")
    if args.role == "web":
        app = web(args.database_url)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_config=None, proxy_headers=False)
    else:
        uvloop.run(worker(args.database_url, args.graph))


if __name__ == "__main__":
    main()
