"""What reply tasks need besides the database, built once per worker process and handed to tasks
through procrastinate's `additional_context` (no module globals)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import procrastinate

from waypost.settings import Settings
from worker.graph import GraphClient
from worker.orchestrator import Orchestrator, build_orchestrator

CONTEXT_KEY = "waypost"


@dataclasses.dataclass(frozen=True)
class WorkerResources:
    settings: Settings
    orchestrator: Orchestrator
    graph: GraphClient

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[WorkerResources]:
        # Both constructors validate their settings: a broken configuration stops the worker here.
        orchestrator = build_orchestrator(settings)
        try:
            graph = GraphClient(settings)
            try:
                yield cls(settings, orchestrator, graph)
            finally:
                await graph.aclose()
        finally:
            await orchestrator.aclose()


def resources_of(context: procrastinate.JobContext) -> WorkerResources:
    return context.additional_context[CONTEXT_KEY]  # type: ignore[no-any-return]
