"""WaypostWorker: procrastinate's Worker with three gaps of procrastinate 3.10.0 closed, by
subclassing, never by patching it. Each gap is shown by a test in tests/test_resilience.py, and the
upstream source of every method replaced here is pinned by tests/test_procrastinate_pins.py:

1. A database restart: procrastinate's listener gives up after one failed reconnect (the worker then
   polls silently, or stops with exit code 0 when periodic tasks exist, as ours do), and its fetch,
   heartbeat and job-status writes raise. Here every database step retries while the database is
   away, the log says so once and says when it is back, and the LISTEN connection returns by itself
   (waypost.listen) and triggers a catch-up fetch.
2. Jobs sharing a `lock`: a job's end does not wake procrastinate's fetch loop, so with concurrency
   above 1 the next job of the conversation waited for the poll. Here a finished job wakes it.
3. The lost wake-up: procrastinate clears its new-job event after an empty fetch, dropping a NOTIFY
   that arrived during it. Here the event is cleared before the fetch. And procrastinate's first fetch
   does not wait for its LISTEN: a job deferred between the two waited for the poll. Here the first
   fetch comes once the worker listens (or after LISTEN_WAIT_SECONDS, should LISTEN never connect).

And four savings (issue 17). procrastinate fetches until a fetch comes back empty, and (2) woke the loop
at every job's end, so a worker keeping up paid three fetches a job, two of them empty. Here each fetch
also says whether other due jobs wait (sql/queries.sql `fetch_jobs_and_backlog`): the loop fetches again
only then, and a job's end wakes it only while one was held back. And procrastinate fetches one job per
statement: on a backlog, its free slots filled at one round trip each, faster than the jobs ended only
while few ran. Here one fetch takes as many jobs as there are free slots. And procrastinate writes a
job's end in a transaction of its own: here a send's record ends its job (worker.job_end), and the
worker does not end it again. And a reply run's first statement was its start, right after the fetch:
here the fetch starts each reply job it takes, and the run gets the rows (worker.reply_start).

It also runs the turn clock (worker.turns) beside procrastinate's side tasks, woken through the same
LISTEN connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import procrastinate
import psycopg
from procrastinate import job_context, utils
from procrastinate.exceptions import ConnectorException
from procrastinate.manager import get_channel_for_queues
from procrastinate.worker import Worker
from psycopg_pool import PoolTimeout

from waypost.listen import backoff, listen_forever
from waypost.logs import job_request_id, log_context
from waypost.sql import query
from worker import job_end, reply_start
from worker.resources import CONTEXT_KEY, WorkerResources, app_pool
from worker.turns import CHANNEL as TURNS_CHANNEL
from worker.turns import TurnClock

logger = logging.getLogger(__name__)

DATABASE_ERRORS = (psycopg.OperationalError, ConnectorException, PoolTimeout)
# When stopping, how long a finished job's status may wait for the database.
STOPPING_PERSIST_SECONDS = 10.0
# How long the first fetch waits for the LISTEN connection, should it not connect (too many
# connections, the database gone again since the worker registered): the fetch then goes ahead.
LISTEN_WAIT_SECONDS = 5.0
DELETES_SUCCEEDED = (procrastinate.jobs.DeleteJobCondition.ALWAYS, procrastinate.jobs.DeleteJobCondition.SUCCESSFUL)


def job_log_context(job: procrastinate.jobs.Job) -> contextlib.AbstractContextManager[None]:
    """The ids a line about `job` carries, where procrastinate's own context is not set."""
    assert job.id is not None
    return log_context(request_id=job_request_id(job.task_name, job.id, job.task_kwargs), job_id=job.id)


def database_away(exc: BaseException) -> bool:
    """Whether a database error means the database cannot be reached (worth waiting for), rather
    than a statement refused (procrastinate wraps both in ConnectorException)."""
    cause = exc.__cause__ if isinstance(exc, ConnectorException) else exc
    return isinstance(cause, psycopg.OperationalError)


class DatabaseWatch:
    """Says once that the database is away, and once that it is back."""

    def __init__(self) -> None:
        self.down_since: float | None = None

    def failed(self, doing: str, exc: BaseException) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
            logger.warning("database unavailable while %s (%s); retrying until it is back", doing, exc)

    def ok(self) -> None:
        if self.down_since is not None:
            logger.warning("database back after %.1fs", time.monotonic() - self.down_since)
            self.down_since = None


def _without_its_idless_shutdown_line(record: logging.LogRecord) -> bool:
    """procrastinate's "Waiting for job to finish" (WaypostWorker._shutdown says it with the job)."""
    return not (getattr(record, "action", None) == "ending_job" and getattr(record, "job", None) is None)


class WaypostWorker(Worker):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.database = DatabaseWatch()
        self.turn_clock: TurnClock | None = None
        # the last fetch saw other due jobs: waiting, or held back by a running job's lock
        self._backlog = False
        # set once this run's LISTEN is up, or once the first fetch has waited LISTEN_WAIT_SECONDS for it
        self._first_fetch_ready = asyncio.Event()
        # The fetch starts the reply jobs it takes (worker.reply_start), given the settings' part of the
        # start; a worker without WorkerResources (procrastinate's own way of building one) does not.
        resources = (self.additional_context or {}).get(CONTEXT_KEY)
        settings = resources.settings if isinstance(resources, WorkerResources) else None
        self._start_params = reply_start.fetch_params(settings)

    async def _fetch_and_process_jobs(self) -> None:
        """procrastinate's loop, with the event cleared before the fetch, database errors survived, and
        as many jobs fetched at once as there are free slots."""
        if self.listen_notify and self.wait and not self._first_fetch_ready.is_set():  # one-shot: no LISTEN
            # A job deferred before the worker listens is announced to nobody: the first fetch comes
            # after the LISTEN, so it sees every job whose NOTIFY went unheard.
            await utils.wait_any(
                self._first_fetch_ready.wait(), self._stop_event.wait(), asyncio.sleep(LISTEN_WAIT_SECONDS)
            )
            self._first_fetch_ready.set()  # waited once: later fetches never wait for it
        while not self._stop_event.is_set():
            acquire_sem_task = asyncio.create_task(self._job_semaphore.acquire())
            jobs: list[tuple[procrastinate.jobs.Job, Any]] = []
            slots = 0
            try:
                await utils.wait_any(acquire_sem_task, self._stop_event.wait())
                if self._stop_event.is_set():
                    break
                slots = 1
                # the other free slots, taken without waiting (acquire does not suspend while free)
                while not self._job_semaphore.locked():
                    await self._job_semaphore.acquire()
                    slots += 1
                assert self.worker_id is not None
                # Cleared before the fetch: a NOTIFY that arrives while it runs is kept.
                self._new_job_event.clear()
                try:
                    jobs = await self._fetch_jobs(slots)
                except DATABASE_ERRORS as exc:
                    self.database.failed("fetching jobs", exc)
                    await asyncio.sleep(backoff(1))
                    self._new_job_event.set()  # try again at once rather than after the poll
                else:
                    self.database.ok()
            finally:
                # the slots taken and not filled go back (the first one too, when the stop came as
                # it was taken); a job taken is started even as the worker stops, as procrastinate's is
                if acquire_sem_task.done() and not acquire_sem_task.cancelled():
                    slots = max(slots, 1)
                for _ in range(slots - len(jobs)):
                    self._job_semaphore.release()
            if not jobs:
                break
            for job, start in jobs:
                self._start_job(job, start)
            if not self._backlog:
                break  # nothing else is due: the next NOTIFY (or a held job's turn) wakes the loop

    async def _fetch_jobs(self, limit: int) -> list[tuple[procrastinate.jobs.Job, Any]]:
        """procrastinate's JobManager.fetch_job for up to `limit` jobs in one statement, noting whether
        other due jobs wait. Each job comes with the rows of its reply run's start, when the fetch made
        it (worker.reply_start), else None."""
        rows = await self.app.connector.execute_query_all_async(
            query=query("fetch_jobs_and_backlog"),
            queues=self.queues,
            worker_id=self.worker_id,
            limit=limit,
            **self._start_params,
        )
        self._backlog = bool(rows[0]["backlog"])
        return [(procrastinate.jobs.Job.from_row(row), row["reply_start"]) for row in rows if row["id"] is not None]

    def _start_job(self, job: procrastinate.jobs.Job, start: Any = None) -> None:
        job_id = job.id

        def abort_reason() -> job_context.AbortReason | None:
            return self._job_ids_to_abort.get(job_id) if job_id else None

        assert job_id is not None and self.worker_id is not None
        # a send's record ends its job as succeeded (worker.job_end), deleted if this worker deletes those
        end = job_end.JobEnd(job_id, self.worker_id, delete=self.delete_jobs in DELETES_SUCCEEDED)
        extra: dict[str, Any] = {job_end.KEY: end}
        if start is not None:
            extra[reply_start.KEY] = start  # the fetch started this reply job (worker.reply_start)
        context = job_context.JobContext(
            app=self.app,
            worker_name=self.worker_name,
            worker_queues=self.queues,
            additional_context={**(self.additional_context or {}), **extra},
            job=job,
            abort_reason=abort_reason,
            start_timestamp=time.time(),
        )
        job_task = asyncio.create_task(self._process_job(context), name=f"process job {job.task_name}[{job.id}]")
        self._running_jobs[job_task] = context

        def on_job_complete(task: asyncio.Task[Any]) -> None:
            del self._running_jobs[task]
            self._job_semaphore.release()
            # The next job of the same lock may be waiting for this one: due jobs were left behind.
            # (A loop waiting for this slot goes on without the event.)
            if self._backlog:
                self._new_job_event.set()

        job_task.add_done_callback(on_job_complete)

    async def _shutdown(self, side_tasks: list[asyncio.Task[Any]]) -> None:
        """procrastinate's, with its line for each job still running said with the job, so that it
        carries the job's ids (procrastinate logs it with none: context=None)."""
        now = time.time()
        for context in self._running_jobs.values():
            logger.info(
                "waiting for job to finish: %s (started %.3f s ago)",
                context.job.call_string,
                now - context.start_timestamp,
                extra={"job": context.job.log_context()},
            )
        self.logger.addFilter(_without_its_idless_shutdown_line)  # the same filter once, however often added
        await super()._shutdown(side_tasks)

    def _start_side_tasks(self) -> list[asyncio.Task[Any]]:
        side_tasks = [
            asyncio.create_task(self._update_heartbeat(), name="update_heartbeats"),
            asyncio.create_task(self._periodic_deferrer(), name="deferrer"),
            asyncio.create_task(self._poll_jobs_to_abort(), name="poll_jobs_to_abort"),
        ]
        self._first_fetch_ready = asyncio.Event()  # per run: the LISTEN is new
        self.turn_clock = TurnClock(app_pool(self.app))
        side_tasks.append(asyncio.create_task(self.turn_clock.run(), name="turn_clock"))
        if self.listen_notify:
            side_tasks.append(asyncio.create_task(self._listen(), name="listener"))
        return side_tasks

    async def _listen(self) -> None:
        conninfo = app_pool(self.app).conninfo
        if not isinstance(conninfo, str):  # psycopg_pool also takes a callable; ours never is one
            raise TypeError("the LISTEN connection needs the pool's conninfo as a string")

        async def on_payload(channel: str, payload: str) -> None:
            if channel == TURNS_CHANNEL:
                if self.turn_clock is not None:
                    self.turn_clock.wake()
                return
            await self._handle_notification(channel=channel, notification=json.loads(payload))

        def on_connected(again: bool) -> None:
            self._first_fetch_ready.set()
            if self.turn_clock is not None:
                self.turn_clock.wake()  # turns started while nobody listened were not announced
            if again:
                self.database.ok()
                self._new_job_event.set()  # jobs deferred while we were away were not announced

        await listen_forever(
            conninfo,
            # procrastinate's last: readiness probes look for it as the connection's latest statement
            [TURNS_CHANNEL, *get_channel_for_queues(self.queues)],
            on_payload,
            on_connected,
            logger,
            "worker wake-ups",
        )

    async def _update_heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.update_heartbeat_interval)
            assert self.worker_id is not None
            try:
                await self.app.job_manager.update_heartbeat(self.worker_id)
            except DATABASE_ERRORS as exc:
                self.database.failed("updating the heartbeat", exc)

    async def _periodic_deferrer(self) -> None:
        attempt = 0
        while True:
            try:
                return await super()._periodic_deferrer()
            except DATABASE_ERRORS as exc:
                self.database.failed("deferring periodic tasks", exc)
                await asyncio.sleep(backoff(attempt))
                attempt += 1

    async def _persist_job_status(
        self,
        job: procrastinate.jobs.Job,
        status: procrastinate.jobs.Status,
        retry_decision: procrastinate.RetryDecision | None,
        context: job_context.JobContext,
        job_result: job_context.JobResult | None,
    ) -> None:
        end = job_end.of(context)
        if end is not None and end.ended:
            # Its send's record ended it as succeeded (worker.job_end): procrastinate's finish would
            # find it no longer 'doing'. What that finish does in memory is done here.
            self._job_ids_to_abort.pop(end.job_id, None)
            if status != procrastinate.jobs.Status.SUCCEEDED or retry_decision is not None:
                with job_log_context(job):
                    logger.warning(
                        "the job ended as succeeded with its send's record: its later status (%s) is not recorded",
                        status.value,
                    )
            return
        # A job that ended while the database was away is recorded when it is back: left 'doing'
        # under a live worker, nothing would ever pick it up again.
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                await super()._persist_job_status(job, status, retry_decision, context, job_result)
                return
            except DATABASE_ERRORS as exc:
                if not database_away(exc):
                    # e.g. "Job was not found or has an invalid status": the sweep took it back from
                    # a worker it judged dead; it runs again and records its own end.
                    with job_log_context(job):
                        logger.warning("the end of the job could not be recorded: %s", exc.__cause__ or exc)
                    return
                self.database.failed("recording a job's end", exc)
                if self._stop_event.is_set() and time.monotonic() - started > STOPPING_PERSIST_SECONDS:
                    raise
                await asyncio.sleep(backoff(attempt))
                attempt += 1
