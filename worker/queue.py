"""The procrastinate App: Waypost's job queue, shared by the webhook (to defer) and the worker."""

from __future__ import annotations

import logging
from typing import Any

import procrastinate
from procrastinate.app import WorkerOptions
from psycopg_pool import AsyncConnectionPool
from typing_extensions import Unpack

from waypost.db import create_pool
from waypost.logs import setup_logging, turn_plain_stderr_into_records
from waypost.schema import ensure_schema
from waypost.settings import Settings, load_settings
from worker.resilience import WaypostWorker
from worker.resources import CONTEXT_KEY, WorkerResources

logger = logging.getLogger(__name__)

REPLY_QUEUE = "replies"
MAINTENANCE_QUEUE = "maintenance"


def heartbeat_interval(settings: Settings) -> float:
    """A live worker's heartbeat comes well within WAYPOST_STALLED_WORKER_SECONDS: otherwise the
    sweep takes the jobs it is running for stalled ones and runs them again (procrastinate beats
    every 10 s by default)."""
    return min(10.0, settings.stalled_worker_seconds / 4)


def worker_options(settings: Settings) -> WorkerOptions:
    # The poll is a backstop: WaypostWorker is woken by NOTIFY, by a finished job and by a regained
    # LISTEN; procrastinate announces neither retries nor jobs whose scheduled time came, though.
    return {
        "concurrency": settings.worker_concurrency,
        "fetch_job_polling_interval": settings.worker_poll_interval,
        "update_heartbeat_interval": heartbeat_interval(settings),
        "name": "waypost-worker",
    }


def _pool_from_environment(**procrastinate_args: Any) -> AsyncConnectionPool:
    """Used when the app is opened without a pool, as `procrastinate --app=worker.app worker` does."""
    settings = load_settings()
    # One logging setup from here on, before procrastinate's CLI prints its first line.
    setup_logging(settings.log_level, settings.log_format, settings.secret_values())
    if settings.log_format == "json":
        turn_plain_stderr_into_records("procrastinate.cli")
    pool = create_pool(settings, name="waypost-procrastinate")
    # procrastinate passes open=False and its connection check: our Pool opens later and checks itself.
    procrastinate_args.pop("open", None)
    procrastinate_args.pop("check", None)
    if procrastinate_args:
        raise TypeError(f"unexpected pool arguments {sorted(procrastinate_args)}")
    return pool


class WaypostApp(procrastinate.App):
    def _worker(self, **kwargs: Unpack[WorkerOptions]) -> WaypostWorker:
        # procrastinate's own way of building its worker, with ours in its place
        return WaypostWorker(app=self, **{**self.worker_defaults, **kwargs})

    async def run_worker_async(self, **kwargs: Unpack[WorkerOptions]) -> None:
        """Check the schema and the configuration, then run procrastinate's worker.

        `waypost worker` passes its settings in additional_context; `procrastinate worker` does
        not, and they are read from the environment.
        """
        connector = self.connector
        assert isinstance(connector, procrastinate.PsycopgConnector)
        # Refuse to take jobs on a database whose schema does not match this code.
        await ensure_schema(connector.pool)
        context = dict(kwargs.get("additional_context") or {})
        settings = context.pop("settings", None)
        if settings is None:  # `procrastinate --app=worker.app worker`: one logging setup all the same
            settings = load_settings()
            setup_logging(settings.log_level, settings.log_format, settings.secret_values())
            kwargs.setdefault("update_heartbeat_interval", heartbeat_interval(settings))
        async with WorkerResources.open(settings) as resources:
            kwargs["additional_context"] = {**context, CONTEXT_KEY: resources}
            await super().run_worker_async(**kwargs)


app = WaypostApp(
    connector=procrastinate.PsycopgConnector(pool_factory=_pool_from_environment),
    import_paths=["worker.reply", "worker.operator_send", "worker.sweep"],
    worker_defaults=worker_options(Settings.model_construct()),
)


async def open_app(settings: Settings) -> AsyncConnectionPool:
    """Open `app` on a pool of our own, which our queries share; the caller closes both."""
    pool = create_pool(settings, name="waypost-worker")
    await pool.open(wait=True)
    await app.open_async(pool=pool)
    return pool
