"""HTTP endpoints. Each one reads its dependencies from `request.app.state.waypost`."""

from __future__ import annotations

import functools
import logging
import time
from typing import NoReturn

import anyio.to_thread
import psycopg
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute
from starlette.schemas import EndpointInfo, SchemaGenerator

from waypost import metrics, signing
from waypost.consent_words import ConsentWords
from waypost.errors import (
    BadSignature,
    BodyTooLarge,
    CronDisabled,
    DatabaseUnavailable,
    MetricsOff,
    ProcessingFailed,
    SchemaMismatch,
    SignatureInvalid,
    SignatureMissing,
    Unauthorized,
    WaypostError,
)
from waypost.logs import request_id_var
from webhook import fastpath, ingest, payload
from webhook.errors import SCHEMA_ERRORS, error_response
from webhook.state import app_state
from worker.tasks import sweep_now

logger = logging.getLogger(__name__)

# The outcome label (waypost_webhook_requests) of each refusal the webhook endpoint raises.
WEBHOOK_OUTCOMES: dict[type[WaypostError], str] = {
    BodyTooLarge: "too_large",
    DatabaseUnavailable: "db_unavailable",
    BadSignature: "bad_signature",
    payload.PayloadError: "bad_payload",
    ProcessingFailed: "error",
}


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if that is what it is."""
    return authorization[7:].strip() if authorization[:7].lower() == "bearer " else None


async def verify_subscription(request: Request) -> Response:
    """Meta's handshake: echo hub.challenge when the verify token matches."""
    params = request.query_params
    token = app_state(request).settings.whatsapp_verify_token
    if (
        token is None
        or params.get("hub.mode") != "subscribe"
        or not signing.tokens_equal(params.get("hub.verify_token"), token.get_secret_value())
    ):
        logger.warning("webhook verification refused")
        return PlainTextResponse("Forbidden", status_code=403)
    challenge = params.get("hub.challenge")
    if not challenge:
        return PlainTextResponse("hub.challenge is missing", status_code=400)
    logger.info("webhook verification accepted")
    return PlainTextResponse(challenge)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_webhook(request: Request) -> Response:
    timer = metrics.Timer()
    outcome = "error"
    try:
        response, outcome = await _receive_webhook(request)
        return response
    except SCHEMA_ERRORS:
        outcome = "db_mismatch"  # the schema guard around /api answers it
        raise
    except WaypostError as exc:
        outcome = next((label for cls, label in WEBHOOK_OUTCOMES.items() if isinstance(exc, cls)), "error")
        raise
    finally:
        metrics.WEBHOOK_REQUESTS.labels(outcome).inc()
        metrics.WEBHOOK_SECONDS.observe(timer.seconds)


async def _receive_webhook(request: Request) -> tuple[Response, str]:
    """The answer and its outcome label (waypost_webhook_requests); a refusal is raised."""
    state = app_state(request)
    settings = state.settings
    request_id = request_id_var.get()
    body = await _read_body(request, settings.max_body_bytes)
    try:
        if body is None:
            message = f"body is larger than the {settings.max_body_bytes} byte limit"
            await ingest.journal(state.pool, request_id, None, "not_checked", message)
            logger.warning("webhook refused: %s", message)
            raise BodyTooLarge(settings.max_body_bytes, message)
        return await _journal_and_store(request, body)
    except psycopg.OperationalError as exc:  # PoolTimeout included: the database is away, Meta delivers again
        logger.warning("webhook refused: the database is unavailable (%s)", exc)
        raise DatabaseUnavailable() from exc


async def _journal_and_store(request: Request, body: bytes) -> tuple[Response, str]:
    started = time.perf_counter()
    state = app_state(request)
    settings = state.settings
    request_id = request_id_var.get()
    verdict: signing.Verdict = "not_checked"
    if settings.whatsapp_app_secret is not None:
        verdict = signing.check(
            settings.whatsapp_app_secret.get_secret_value(),
            body,
            request.headers.get("x-hub-signature-256"),
        )
    elif not settings.dangerously_skip_signature_check:  # settings are checked at startup
        raise RuntimeError("no app secret and signature checks not disabled")
    if verdict in ("missing", "invalid"):
        event_id = await ingest.journal(state.pool, request_id, body, verdict, f"signature {verdict}")
        logger.warning("webhook refused: signature %s (event %s)", verdict, event_id)
        raise SignatureMissing() if verdict == "missing" else SignatureInvalid()

    try:
        batch = payload.parse(body)
    except payload.PayloadError as exc:
        event_id = await ingest.journal(state.pool, request_id, body, verdict, str(exc))
        logger.warning("webhook refused: %s (event %s)", exc, event_id)
        raise
    except Exception as exc:
        await _failed(request, body, verdict, None, exc)
    if batch.refused and not batch.items:
        # Nothing in it can be stored: say why, item by item (Meta's retry would fail the same way).
        event_id = await ingest.journal(state.pool, request_id, body, verdict)
        await ingest.record_refused(state.pool, event_id, batch.refused)
        logger.warning("webhook refused: %s (event %s)", payload.describe_refused(batch.refused), event_id)
        raise payload.PayloadError(batch.refused[0].reason, refused=[item.as_dict() for item in batch.refused])

    event_id, result = await _store(request, body, verdict, batch)
    elapsed_ms = (time.perf_counter() - started) * 1000
    if result.refused:
        logger.warning("webhook event %s: %s", event_id, payload.describe_refused(result.refused))
    logger.info(
        "webhook event %s stored: %s ignored=%s elapsed_ms=%.1f",
        event_id,
        {key: value for key, value in result.summary().items() if key != "refused"},
        len(batch.ignored_changes),
        elapsed_ms,
    )
    metrics.INBOUND_MESSAGES.inc(result.new_messages)
    for status_outcome, count in result.statuses.items():
        metrics.STATUSES.labels(status_outcome).inc(count)
    for phone_number_id, pricing in result.priced:
        metrics.count_pricing(phone_number_id, pricing)
    outcome = "duplicate" if result.duplicate_messages and not result.new_messages else "ok"
    return JSONResponse({"ok": True, "request_id": request_id, **result.summary()}), outcome


async def _store(
    request: Request, body: bytes, verdict: signing.Verdict, batch: payload.Batch
) -> tuple[int, ingest.IngestResult]:
    """Journal and store the batch: in one statement when it is plain messages and statuses (the
    common case), else the journal row first and the items in a second transaction."""
    state = app_state(request)
    settings = state.settings
    request_id = request_id_var.get()
    words = consent_words(settings.opt_out_words, settings.opt_in_words)
    if fastpath.plain(batch, words):
        try:
            return await fastpath.store(state.webhooks, request_id, body, verdict, batch)
        except ingest.ITEM_ERRORS as exc:  # nothing was written: the general path isolates the item
            logger.warning("webhook: an item was refused (%s); storing the items one by one", exc)
        except psycopg.OperationalError:
            raise
        except Exception as exc:
            await _failed(request, body, verdict, None, exc)
    event_id = await ingest.journal(state.pool, request_id, body, verdict)
    try:
        result = await ingest.process(
            state.pool,
            event_id,
            batch,
            request_id,
            pause_ai_on_echo=settings.pause_ai_on_phone_reply,
            words=words,
            window=settings.turn_window,
        )
    except psycopg.OperationalError:  # the database is away: 503, Meta delivers again
        raise
    except Exception as exc:
        await _failed(request, body, verdict, event_id, exc)
    return event_id, result


async def _failed(
    request: Request, body: bytes, verdict: signing.Verdict, event_id: int | None, exc: Exception
) -> NoReturn:
    """The journal says why this attempt failed (a new row, or the one written before), and the
    request fails: 500 makes Meta deliver again; a schema error is answered by the guard middleware."""
    pool = app_state(request).pool
    schema = isinstance(exc, SCHEMA_ERRORS)
    error = f"DB_MISMATCH: {exc}" if schema else f"{type(exc).__name__}: {exc}"
    if event_id is None:
        event_id = await ingest.journal(pool, request_id_var.get(), body, verdict, error)
    else:
        await ingest.record_error(pool, event_id, error)
    if schema:
        raise exc
    logger.error("webhook processing failed (event %s)", event_id, exc_info=exc)
    raise ProcessingFailed() from exc


@functools.cache
def consent_words(opt_out: tuple[str, ...], opt_in: tuple[str, ...]) -> ConsentWords:
    """The opt-out and opt-in words, built once per setting rather than per request."""
    return ConsentWords.of(opt_out, opt_in)


async def run_outbound_jobs(request: Request) -> Response:
    """Run the sweep now. CRON_SECRET as `Authorization: Bearer ...` or `?token=...`; never open."""
    state = app_state(request)
    secret = state.settings.cron_secret
    if secret is None:
        raise CronDisabled()
    bearer = bearer_token(request.headers.get("authorization", ""))
    if bearer is not None:
        method, given = "bearer", bearer
    elif "token" in request.query_params:
        method, given = "query", request.query_params["token"]
    else:
        raise Unauthorized("give CRON_SECRET as a bearer token or ?token=")
    if not signing.tokens_equal(given, secret.get_secret_value()):
        logger.warning("cron endpoint: wrong secret (%s)", method)
        raise Unauthorized("wrong cron secret")
    started = time.perf_counter()
    report = await sweep_now(state.pool, state.settings, state.media_store)
    elapsed = (time.perf_counter() - started) * 1000
    return JSONResponse(
        {
            "ok": True,
            "message": "Job runner triggered",
            "authMethod": method,
            "elapsed": f"{elapsed:.0f}ms",
            "request_id": request_id_var.get(),
            **report.as_dict(),
        }
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def readyz(request: Request) -> Response:
    try:
        report = await app_state(request).schema.refresh()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable() from exc
    if not report.ok:
        return error_response(SchemaMismatch(report.problems), 503)  # not ready, rather than broken
    return JSONResponse({"ok": True, "schema": "ok"})


async def openapi(request: Request) -> Response:
    """The OpenAPI description of the inbox JSON API, from its endpoints' docstrings."""
    return JSONResponse(SCHEMAS.get_schema(request.app.routes))


class OperationsOnly(SchemaGenerator):
    """Describes the endpoints whose docstring carries an OpenAPI operation (YAML after `---`): the
    inbox API's. Other docstrings are prose, not YAML."""

    def get_endpoints(self, routes: list[BaseRoute]) -> list[EndpointInfo]:
        return [info for info in super().get_endpoints(routes) if "---" in (info.func.__doc__ or "")]


SCHEMAS = OperationsOnly(
    {
        "openapi": "3.0.3",
        "info": {
            "title": "Waypost inbox API",
            "version": "1",
            "description": "The operator inbox's JSON API. Every endpoint needs a session cookie from "
            "/inbox/login; POST requests also need the session's CSRF token in the X-CSRF-Token header "
            "(the inbox pages carry it in <meta name=csrf-token>). Errors answer "
            "{ok: false, code, error, request_id}.",
        },
    }
)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; only with WAYPOST_METRICS_TOKEN as a bearer token."""
    token = app_state(request).settings.metrics_token
    if token is None:
        raise MetricsOff()
    given = bearer_token(request.headers.get("authorization", ""))
    if not signing.tokens_equal(given, token.get_secret_value()):
        raise Unauthorized("send WAYPOST_METRICS_TOKEN as Authorization: Bearer <token>")
    database_url = app_state(request).settings.require_database_url()
    body = await anyio.to_thread.run_sync(metrics.render, database_url)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
