"""Live inbox: one LISTEN connection per web process, fanned out to every open page over
Server-Sent Events (sse-starlette). The waypost_inbox_* triggers emit the notifications."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response

from waypost.listen import listen_forever
from webhook.inbox.auth import operator_page, session_live
from webhook.state import app_state

logger = logging.getLogger(__name__)

CHANNEL = "waypost_inbox"  # fed by the waypost_inbox_* triggers
QUEUE_SIZE = 256
# Tells a page to refetch everything: it may have missed events (reconnect, overflow).
RESYNC: dict[str, Any] = {"type": "resync"}
# How often an open stream checks that its session is still live (signed out, revoked, expired).
SESSION_CHECK_SECONDS = 15.0


class InboxFeed:
    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self.shutdown = anyio.Event()  # ends open event streams when the app stops

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="waypost-inbox-feed")

    async def stop(self) -> None:
        self.shutdown.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def publish(self, event: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:  # a slow page: drop its backlog, tell it to refetch
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESYNC)

    async def _run(self) -> None:
        await listen_forever(self._database_url, [CHANNEL], self._forward, self._connected, logger, "inbox feed")

    def _connected(self, again: bool) -> None:
        if again:
            self.publish(RESYNC)

    def _forward(self, channel: str, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            logger.warning("inbox feed: ignored a malformed notification")
            return
        self.publish({"type": "change", **event})


@operator_page
async def events(request: Request) -> Response:
    """The event stream an inbox page listens to: `change` events, and `resync` when it must refetch."""
    feed = app_state(request).feed
    assert feed is not None

    async def stream() -> AsyncIterator[ServerSentEvent]:
        with feed.subscribe() as queue:
            # First event: the page (re)connected, and may have missed changes meanwhile.
            yield ServerSentEvent(data=json.dumps(RESYNC), event="resync", retry=2000)
            checked = time.monotonic()
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=SESSION_CHECK_SECONDS)
                except TimeoutError:
                    event = None
                if event is not None:
                    yield ServerSentEvent(data=json.dumps(event), event=event["type"])
                if time.monotonic() - checked >= SESSION_CHECK_SECONDS:
                    # A stream outlives the request that opened it: it ends with its session.
                    if not await session_live(request):
                        return
                    checked = time.monotonic()

    return EventSourceResponse(stream(), ping=15, send_timeout=10, shutdown_event=feed.shutdown)
