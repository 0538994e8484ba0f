"""Read receipts and the typing indicator on the contact's phone (docs/whatsapp.md "Read receipts and
the typing indicator"; README "Read receipts and the typing indicator").

One Cloud API call marks an inbound message (and the earlier ones) read and, with `typing_indicator`,
shows "typing…" until the reply arrives or 25 s pass. The reply task wraps its model call in
`answering()`: when the model has not answered within WAYPOST_TYPING_AFTER_SECONDS, the call goes out,
is sent again every WAYPOST_TYPING_REFRESH_SECONDS while the model works, and stops when it answers.
An answer ready sooner shows no indicator (Meta drops it when the reply arrives: it would show nothing,
and waiting for Meta's answer to it would delay the reply): the reply's record marks the message read
in the same statement (worker.sending, `read_with_send`), and `settle()` makes the plain read call once
the reply is sent (after it: never competing with the send); a call Meta refuses releases the mark, as
an operator's open does (`read_receipt_release`). A reply that was not sent leaves the mark to the
call, as before: it is recorded only once Meta answered.
A message left to an operator is marked read by the `read_receipt` task once an operator opens its
conversation (the inbox claims it, in SQL, and defers the task through worker.tasks).

None of these calls fails, retries or holds up a reply: each is bounded by WAYPOST_READ_RECEIPT_TIMEOUT,
a failure is logged (request_id, job_id) and counted (waypost_read_receipts_total), and once the model
has answered, a call still on its way gets at most END_GRACE before it is cut off.

Written for one message per reply today; a reply that answers several messages (a burst) names the
latest of them, and Meta marks the earlier ones read with it (`read_receipt_mark` records them all).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from types import TracebackType

import procrastinate

from waypost import metrics
from waypost.db import autocommit, execute, fetch_optional, fetch_value
from waypost.logs import log_context
from worker.graph import SendFailed
from worker.queue import app
from worker.resources import WorkerResources, resources_of
from worker.rows import Conversation, Inbound
from worker.tasks import READ_RECEIPT, REPLY_QUEUE

logger = logging.getLogger(__name__)

# At most this many calls per reply (the first, then refreshes): 5 minutes of "typing…" at 20 s.
MAX_CALLS = 16
# Once the model has answered, a call on its way may land first (the indicator must not arrive after
# the reply and linger), for at most this long (or the call's own timeout, if shorter).
END_GRACE = 1.0


async def mark_read(resources: WorkerResources, *, phone_number_id: str, wa_message_id: str, typing: bool) -> bool:
    """One call to Meta; True when it marked the message read. Never raises (but cancellation)."""
    kind = "typing" if typing else "read"
    seconds = resources.settings.read_receipt_timeout
    try:
        async with asyncio.timeout(seconds):  # the whole call, however slowly an answer drips
            await resources.graph.mark_read(phone_number_id=phone_number_id, message_id=wa_message_id, typing=typing)
    except TimeoutError:
        problem = f"no answer within {seconds:g} s"
    except SendFailed as exc:
        problem = str(exc)
    except Exception as exc:  # a read receipt is never worth failing a reply over
        problem = f"{type(exc).__name__}: {exc}"
    else:
        metrics.READ_RECEIPTS.labels(kind, "ok").inc()
        logger.info("read receipt sent kind=%s wa_message_id=%s", kind, wa_message_id)
        return True
    metrics.READ_RECEIPTS.labels(kind, "failed").inc()
    logger.warning("read receipt failed kind=%s wa_message_id=%s: %s (not retried)", kind, wa_message_id, problem)
    return False


class Answering:
    """While the AI writes its answer to `inbound`: the message is marked read with the typing
    indicator, refreshed until the block ends (`async with answering(...)`)."""

    def __init__(self, resources: WorkerResources, conversation: Conversation, inbound: Inbound) -> None:
        settings = resources.settings
        self.resources = resources
        self.conversation = conversation
        self.inbound = inbound
        self.read = settings.read_receipts != "never"
        self.typing = self.read and settings.typing_indicator  # Meta shows it only with a read receipt
        self.marked = False  # Meta answered a call: the message is read on the contact's phone
        self.idle = asyncio.Event()  # set while no call is on its way
        self.task: asyncio.Task[None] | None = None
        self.after = settings.typing_after_seconds if self.typing else 0.0  # no indicator before this
        self.called = False  # the first typing call went out: the reply waits for it (__aexit__)
        self.read_after = False  # an immediate answer: settle() marks the message read after the send
        self.marked_at: dt.datetime | None = None  # the send's record marked it read, as of this time

    async def __aenter__(self) -> Answering:
        if self.read:
            self.task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task = self.task
        if task is None:
            return
        if self.after and not self.called:  # answered before the indicator was due: none is shown
            task.cancel()
            await asyncio.wait({task})
            self.read_after = True
            return  # the reply goes now; settle() marks it read once it is sent
        grace = min(END_GRACE, self.resources.settings.read_receipt_timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self.idle.wait()
        task.cancel()
        await asyncio.wait({task})  # never raises the task's own cancellation into the reply
        await self._record()

    def read_with_send(self) -> tuple[int, int] | None:
        """For an immediate answer: the message the reply's record marks read (then `sent`)."""
        return (self.conversation.id, self.inbound.id) if self.read_after else None

    def sent(self, sent_at: dt.datetime) -> None:
        if self.read_after:
            self.marked_at = sent_at

    async def settle(self) -> None:
        """After the reply's send, for an immediate answer: the plain read call (at most END_GRACE: the
        worker's slot is not held longer; the job itself ended with the send's record, worker.job_end),
        recorded, or the send's mark released if Meta did not take it. Never raises (but cancellation)."""
        if not self.read_after:
            return
        self.read_after = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(END_GRACE, self.resources.settings.read_receipt_timeout)):
                await self._call(typing=False)
        if self.marked_at is None:
            await self._record()
        elif not self.marked:
            await self._release(self.marked_at)

    async def _release(self, marked_at: dt.datetime) -> None:
        try:
            async with autocommit(self.resources.pool) as conn:
                await execute(conn, "read_receipt_release", conversation_id=self.conversation.id, claimed_at=marked_at)
        except Exception as exc:  # the message stays marked read: the contact's next message marks it again
            logger.warning("read receipt: mark not released for wa_message_id=%s: %s", self.inbound.wa_message_id, exc)

    async def _record(self) -> None:
        if self.marked:  # recorded here, where no cancellation can cut the write short
            try:
                async with autocommit(self.resources.pool) as conn:
                    await execute(
                        conn, "read_receipt_mark", conversation_id=self.conversation.id, message_id=self.inbound.id
                    )
            except Exception as exc:  # the next operator's open marks it again: harmless
                logger.warning("read receipt: not recorded for wa_message_id=%s: %s", self.inbound.wa_message_id, exc)

    async def _run(self) -> None:
        try:
            if not self.typing:
                async with autocommit(self.resources.pool) as conn:
                    pending = await fetch_value(conn, "read_receipt_pending", message_id=self.inbound.id)
                if pending:
                    await self._call(typing=False)
                return
            loop = asyncio.get_running_loop()
            started = loop.time() + self.after
            for n in range(MAX_CALLS):
                if n or self.after:
                    self.idle.set()
                    await asyncio.sleep(
                        max(0.0, started + n * self.resources.settings.typing_refresh_seconds - loop.time())
                    )
                    self.idle.clear()
                self.called = True  # no await since the sleep: __aexit__ sees it set or the task asleep
                await self._call(typing=True)
        except Exception:
            logger.exception("read receipt: gave up on wa_message_id=%s", self.inbound.wa_message_id)
        finally:
            self.idle.set()

    async def _call(self, *, typing: bool) -> None:
        if await mark_read(
            self.resources,
            phone_number_id=self.conversation.phone_number_id,
            wa_message_id=self.inbound.wa_message_id,
            typing=typing,
        ):
            self.marked = True


def answering(resources: WorkerResources, conversation: Conversation, inbound: Inbound) -> Answering:
    """Mark `inbound` read and show the typing indicator for the duration of an `async with` block."""
    return Answering(resources, conversation, inbound)


@app.task(name=READ_RECEIPT, queue=REPLY_QUEUE, pass_context=True)
async def read_receipt(context: procrastinate.JobContext, message_id: int, request_id: str) -> None:
    """An operator opened a conversation whose messages waited for one: mark the latest read (the
    inbox claimed it). Refused or unanswered, the claim is released for the next open to try."""
    resources = resources_of(context)
    with log_context(request_id=request_id, job_id=context.job.id):
        async with resources.pool.connection() as conn:
            row = await fetch_optional(conn, "read_receipt_load", message_id=message_id)
        if row is None:
            logger.info("read receipt: message %s is no longer claimed, nothing to send", message_id)
            return
        if resources.settings.read_receipts == "never":
            logger.info("read receipt: WAYPOST_READ_RECEIPTS=never in this worker, message %s not marked", message_id)
        elif await mark_read(
            resources, phone_number_id=row["phone_number_id"], wa_message_id=row["wa_message_id"], typing=False
        ):
            return
        async with resources.pool.connection() as conn:
            await execute(
                conn,
                "read_receipt_release",
                conversation_id=row["conversation_id"],
                claimed_at=row["read_receipt_at"],
            )
