"""The procrastinate App the worker runs, with the sweep as its periodic task. The web side never
imports this module: it defers by task name through worker.tasks."""

from __future__ import annotations

import logging
from typing import Any

import procrastinate
from procrastinate.app import WorkerOptions
from psycopg_pool import AsyncConnectionPool
from typing_extensions import Unpack

from waypost.db import Pool, create_pool
from waypost.heap import freeze_startup
from waypost.logs import job_request_id, log_context, setup_logging, turn_plain_stderr_into_records
from waypost.schema import ensure_schema
from waypost.settings import Settings, load_settings
from worker import warmup
from worker.connector import Connector
from worker.resilience import WaypostWorker
from worker.resources import CONTEXT_KEY, WorkerResources, app_pool, resources_of
from worker.sweep import sweep
from worker.tasks import MAINTENANCE_QUEUE, REPLY_QUEUE, SWEEP

__all__ = ["MAINTENANCE_QUEUE", "REPLY_QUEUE", "app", "open_app", "worker_options"]

logger = logging.getLogger(__name__)


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


def _pool_from_environment(**procrastinate_args: Any) -> AsyncConnectionPool[Any]:
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
        worker = WaypostWorker(app=self, **{**self.worker_defaults, **kwargs})
        logger.info(
            "worker starting concurrency=%s poll_interval=%ss", worker.concurrency, worker.fetch_job_polling_interval
        )
        return worker

    async def run_worker_async(self, **kwargs: Unpack[WorkerOptions]) -> None:
        """Check the schema and the configuration, then run procrastinate's worker.

        `waypost worker` passes its settings in additional_context; `procrastinate worker` does
        not, and they are read from the environment here, at start (never at import). Either way
        they set the worker's options; what the caller passes explicitly (CLI flags) wins.
        """
        pool = app_pool(self)
        if not isinstance(pool, Pool):
            raise TypeError("open the App on waypost.db.create_pool (open_app does)")
        # Refuse to take jobs on a database whose schema does not match this code.
        await ensure_schema(pool)
        context = dict(kwargs.pop("additional_context", {}) or {})  # None counts as none
        settings = context.pop("settings", None)
        if settings is None:  # `procrastinate --app=worker.app worker`: one logging setup all the same
            settings = load_settings()
            setup_logging(settings.log_level, settings.log_format, settings.secret_values())
        options: WorkerOptions = {**worker_options(settings), **kwargs}
        await warmup.warm_up(pool, settings, settings.db_pool_min_size)  # before the first fetch
        async with WorkerResources.open(settings, pool) as resources:
            options["additional_context"] = {**context, CONTEXT_KEY: resources}
            freeze_startup()  # what start-up loaded stays out of the collector's scans
            await super().run_worker_async(**options)


# No worker_defaults: they come from the settings, which are read when a worker starts.
app = WaypostApp(
    connector=Connector(pool_factory=_pool_from_environment),
    import_paths=[
        "worker.reply",
        "worker.operator_send",
        "worker.media",
        "worker.transcription",
        "worker.consent",
        "worker.template_drafts",
        "worker.receipts",
    ],
)


@app.periodic(cron="* * * * *", periodic_id="sweep")
@app.task(name=SWEEP, queue=MAINTENANCE_QUEUE, queueing_lock="sweep", pass_context=True)
async def sweep_task(context: procrastinate.JobContext, timestamp: int) -> None:
    job = context.job
    resources = resources_of(context)
    # A periodic run serves no request: its lines carry its own id, as procrastinate's do (waypost.logs).
    with log_context(request_id=job_request_id(job.task_name, job.id or 0, job.task_kwargs), job_id=job.id):
        await sweep(resources.pool, resources.settings, context.app.job_manager, resources.media_store)


async def open_app(settings: Settings) -> Pool:
    """Open `app` on a pool of our own, which our queries share; the caller closes both."""
    pool = create_pool(settings, name="waypost-worker")
    await pool.open(wait=True)
    await app.open_async(pool=pool)
    return pool
