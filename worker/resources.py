"""What tasks need besides their arguments, built once per worker process and handed to tasks
through procrastinate's `additional_context` (no module globals): the settings, the pool the App
runs on (our queries share it), the orchestrator (grounded in the knowledge base), the Graph client,
the media store and the transcription client."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import procrastinate
from psycopg_pool import AsyncConnectionPool

from waypost.db import Pool
from waypost.media_store import MediaStore
from waypost.settings import Settings
from worker.business_hours import configured as business_hours
from worker.graph import GraphClient
from worker.orchestrator import Orchestrator, build_orchestrator
from worker.orchestrator.grounding import grounded
from worker.reengage_config import Reengagement, reengagement
from worker.transcriber import Transcriber

CONTEXT_KEY = "waypost"


def app_pool(app: procrastinate.App) -> AsyncConnectionPool[Any]:
    """The pool procrastinate's connector runs on (opened: the App is open)."""
    connector = app.connector
    if not isinstance(connector, procrastinate.PsycopgConnector):
        raise TypeError(f"the App must run on a PsycopgConnector, not {connector!r}")
    return connector.pool


@dataclasses.dataclass(frozen=True)
class WorkerResources:
    settings: Settings
    pool: Pool
    orchestrator: Orchestrator
    graph: GraphClient
    media_store: MediaStore
    transcriber: Transcriber | None = None  # None: WAYPOST_TRANSCRIBE_URL is not set
    reengage: Reengagement | None = None  # None: WAYPOST_REENGAGE_TEMPLATE is empty

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, pool: Pool) -> AsyncIterator[WorkerResources]:
        # Both constructors validate their settings: a broken configuration stops the worker here.
        reengage = reengagement(settings)
        business_hours(settings)  # WAYPOST_BUSINESS_HOURS and WAYPOST_TIMEZONE
        media_store = MediaStore(settings)
        try:
            orchestrator: Orchestrator = build_orchestrator(settings)
            try:
                orchestrator = await grounded(orchestrator, settings, pool)  # the knowledge base, per turn
                transcriber = Transcriber(settings) if settings.transcription_on else None
                try:
                    graph = GraphClient(settings)
                    try:
                        yield cls(settings, pool, orchestrator, graph, media_store, transcriber, reengage)
                    finally:
                        await graph.aclose()
                finally:
                    if transcriber is not None:
                        await transcriber.aclose()
            finally:
                await orchestrator.aclose()
        finally:
            await media_store.aclose()


def resources_of(context: procrastinate.JobContext) -> WorkerResources:
    resources = context.additional_context[CONTEXT_KEY]
    if not isinstance(resources, WorkerResources):
        raise TypeError("the worker runs without WorkerResources: start it through worker.queue")
    return resources
