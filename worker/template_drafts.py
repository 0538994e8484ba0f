"""The `submit_template` task: a template drafted in the inbox, POSTed to Meta's create-template API
(POST /{waba-id}/message_templates) by the worker, never by the web request.

Submitted once: the draft's row is claimed before Meta is asked and counts the attempts. Meta has no
idempotency key, but a name and language are unique in an account: when a retry (an attempt after one
that may have reached Meta: a timeout, a crash) is told "Content in this language already exists"
(code 100, subcode 2388024), the template Meta lists under that name is the one submitted, and its id
and status are read instead of failing. On a first attempt the same answer means someone else's
template holds the name: a refusal, shown with the template Meta has (now listed too).

Meta's answer (`{id, status, category}`) becomes the template's row in `message_templates`, the row
`message_template_status_update` webhooks (keyed on name and language) move to APPROVED or REJECTED;
an APPROVED template can be sent. Transient failures (no answer, 5xx, 429) are retried a bounded
number of times; a refusal is stored on the draft, shown on the inbox's templates page and notified.
docs/whatsapp.md "Creating templates".
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import httpx
import procrastinate
import psycopg
from psycopg.types.json import Jsonb

from waypost.db import DictConnection, execute, fetch_optional
from waypost.logs import log_context
from waypost.text import clean_text
from worker.graph import GraphClient, classify_response
from worker.queue import app
from worker.resources import WorkerResources, resources_of
from worker.retry import FollowTaskDecision, RetryLater, retry_delay
from worker.tasks import REPLY_QUEUE, SUBMIT_TEMPLATE
from worker.templates import FIELDS, parameter_counts, template_row

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
EXISTS_CODE, EXISTS_SUBCODE = 100, 2388024  # "Content in This Language Already Exists"
MAX_PAGES = 20  # of templates of one name (one per language): far more than there are languages


@dataclasses.dataclass(frozen=True)
class Submitted:
    template_id: str
    status: str
    category: str | None


@dataclasses.dataclass(frozen=True)
class Refused:
    error: dict[str, Any]
    existing: dict[str, Any] | None = None  # the template Meta holds under that name, to list it


@dataclasses.dataclass(frozen=True)
class Transient:
    reason: str
    retry_after: float | None = None


@app.task(name=SUBMIT_TEMPLATE, queue=REPLY_QUEUE, pass_context=True, retry=FollowTaskDecision())
async def submit_template(context: procrastinate.JobContext, draft_id: int, request_id: str) -> None:
    """Submit one draft; a lost database is a bounded retry (the next run reads back what Meta has),
    any error nobody classified refuses the draft with the reason: never left "submitting"."""
    resources = resources_of(context)
    with log_context(request_id=request_id, job_id=context.job.id):
        try:
            await submit(resources, draft_id)
        except RetryLater:
            raise
        except psycopg.OperationalError as exc:
            if (context.job.attempts or 0) >= 2 * MAX_ATTEMPTS:
                raise
            logger.warning("template draft %s: database unavailable (%s): retrying", draft_id, exc)
            raise RetryLater("database unavailable", 5.0) from exc
        except Exception as exc:
            logger.exception("template draft %s: unexpected error", draft_id)
            reason = clean_text(f"unexpected error: {type(exc).__name__}: {exc}")[:500]
            message = f"{reason}; it may have reached Meta: `waypost templates sync` shows whether it did"
            async with resources.pool.connection() as conn, conn.transaction():
                draft = await fetch_optional(conn, "template_draft", draft_id=draft_id)
                if draft is not None:
                    await record_refused(conn, dict(draft), Refused({"message": message}))
            raise


async def submit(resources: WorkerResources, draft_id: int) -> None:
    async with resources.pool.connection() as conn:
        draft = await fetch_optional(conn, "template_draft_claim", draft_id=draft_id)
    if draft is None:
        logger.info("template draft %s is submitted or refused already: nothing to do", draft_id)
        return
    label = f"{draft['name']}/{draft['language']}"
    outcome = await ask_meta(resources.graph, draft)
    async with resources.pool.connection() as conn, conn.transaction():
        if isinstance(outcome, Submitted):
            status = await record_submitted(conn, draft, outcome)
            logger.info(
                "template %s submitted (attempt %s): Meta id %s, %s",
                label,
                draft["attempts"],
                outcome.template_id,
                status,
            )
            return
        if isinstance(outcome, Transient) and draft["attempts"] < MAX_ATTEMPTS:
            delay = retry_delay(resources.settings, draft["attempts"], outcome.retry_after)
            await execute(conn, "template_draft_note", draft_id=draft_id, error=Jsonb({"message": outcome.reason}))
            logger.warning("template %s: attempt %s failed: %s", label, draft["attempts"], outcome.reason)
            raise RetryLater(outcome.reason, delay)
        if isinstance(outcome, Transient):
            reason = f"Meta could not be reached after {draft['attempts']} attempts: {outcome.reason}"
            refusal = Refused({"message": reason})
        else:
            refusal = outcome
        await record_refused(conn, draft, refusal)
    logger.warning("template %s refused: %s", label, refusal.error.get("message"))


async def ask_meta(graph: GraphClient, draft: dict[str, Any]) -> Submitted | Refused | Transient:
    try:
        response = await graph.create_template(waba_id=draft["waba_id"], body=draft["request"])
    except httpx.TransportError as exc:
        # Maybe created (a read timeout): the next attempt finds it by its name if so.
        return Transient(f"{type(exc).__name__}: {exc}")
    if response.is_success:
        answer = _json(response)
        template_id = answer.get("id")
        if template_id in (None, ""):
            return Transient(f"HTTP {response.status_code} without a template id")
        status = clean_text(str(answer.get("status") or "PENDING"))[:64]
        category = answer.get("category")
        return Submitted(str(template_id)[:64], status, clean_text(str(category))[:64] if category else None)
    error = meta_error(response)
    if error.get("code") == EXISTS_CODE and error.get("error_subcode") == EXISTS_SUBCODE:
        return await _already_there(graph, draft, error)
    failure = classify_response(response)
    if failure.kind == "retryable":
        return Transient(failure.reason, failure.retry_after)
    return Refused(error)


async def _already_there(
    graph: GraphClient, draft: dict[str, Any], error: dict[str, Any]
) -> Submitted | Refused | Transient:
    try:
        found = await find_template(graph, draft["waba_id"], draft["name"], draft["language"])
    except (httpx.TransportError, ValueError) as exc:
        return Transient(f"Meta says the template exists; reading it failed: {exc}")
    if draft["attempts"] > 1:
        if found is None:
            return Transient("Meta says the template exists but does not list it yet")
        category = found.get("category")
        return Submitted(str(found.get("id") or ""), str(found.get("status") or "PENDING"), category and str(category))
    shown = f" (its status: {found.get('status')})" if found else ""
    message = f"Meta has a template named {draft['name']} in {draft['language']} already{shown}: pick another name"
    return Refused({**error, "message": message, "meta_message": error.get("message")}, existing=found)


async def find_template(graph: GraphClient, waba_id: str, name: str, language: str) -> dict[str, Any] | None:
    """The template of that name and language Meta lists, or None; raises ValueError on a bad answer."""
    after: str | None = None
    for _ in range(MAX_PAGES):
        response = await graph.templates_named(waba_id=waba_id, name=name, after=after, fields=FIELDS)
        if not response.is_success:
            raise ValueError(f"template list: HTTP {response.status_code}")
        page = _json(response)
        data = page.get("data")
        if not isinstance(data, list):
            raise ValueError("template list: no data")
        for item in data:
            if isinstance(item, dict) and item.get("name") == name and item.get("language") == language:
                return item
        paging = page.get("paging")
        paging = paging if isinstance(paging, dict) else {}
        cursors = paging.get("cursors")
        after = cursors.get("after") if isinstance(cursors, dict) and paging.get("next") else None
        if not data or not after:
            return None
    return None


async def record_submitted(conn: DictConnection, draft: dict[str, Any], outcome: Submitted) -> str:
    """The draft submitted, and the template's row as Meta answered; the row's status (a webhook
    stored since Meta was asked wins)."""
    await execute(
        conn,
        "template_draft_submitted",
        draft_id=draft["id"],
        template_id=outcome.template_id,
        meta_status=outcome.status,
    )
    components = draft["request"].get("components", [])
    row = await fetch_optional(
        conn,
        "template_submitted_upsert",
        template_id=outcome.template_id,
        waba_id=draft["waba_id"],
        name=draft["name"],
        language=draft["language"],
        category=outcome.category or draft["category"],
        status=outcome.status,
        components=Jsonb(components),
        asked_at=draft["asked_at"],
        **parameter_counts(components),
    )
    return str(row["status"]) if row else outcome.status


async def record_refused(conn: DictConnection, draft: dict[str, Any], refusal: Refused) -> None:
    if await fetch_optional(conn, "template_draft_refused", draft_id=draft["id"], error=Jsonb(refusal.error)) is None:
        return
    if refusal.existing is not None:
        row = template_row(draft["waba_id"], refusal.existing)
        if row is not None:
            await execute(conn, "template_upsert", **row, read_at=draft["asked_at"])  # Meta's answer to that ask
    reason = " ".join(str(part) for part in (refusal.error.get("message"), refusal.error.get("error_user_msg")) if part)
    await execute(
        conn,
        "notification_insert",
        conversation_id=None,
        message_id=None,
        kind="template_refused",
        body=clean_text(f"Template {draft['name']} ({draft['language']}) was not submitted: {reason}")[:2000],
    )


def meta_error(response: httpx.Response) -> dict[str, Any]:
    """Meta's `error` object, the parts worth showing: code, error_subcode, message, error_user_title,
    error_user_msg (the sentence meant for a person)."""
    error = _json(response).get("error")
    if not isinstance(error, dict):
        return {"code": None, "message": f"HTTP {response.status_code}"}
    kept: dict[str, Any] = {"http_status": response.status_code}
    for key in ("code", "error_subcode"):
        if isinstance(error.get(key), int) and not isinstance(error.get(key), bool):
            kept[key] = error[key]
    for key in ("message", "error_user_title", "error_user_msg", "type"):
        if isinstance(error.get(key), str):
            kept[key] = clean_text(error[key])[:1000]
    kept.setdefault("message", f"HTTP {response.status_code}")
    return kept


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
