"""A fake WhatsApp Cloud API send endpoint, for tests, benchmarks and `waypost dev`.

It validates a send like Meta does, answers with a wamid, records every request, can be told
(in Python or over HTTP under /_fake/) to answer errors or to hang, and can post signed status
webhooks (sent, delivered, read, failed; echoing biz_opaque_callback_data) back to Waypost. It
serves media files and takes uploads too (the handlers are in waypost/devtools/fake_media.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import deque
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from waypost import kinds
from waypost.devtools import payloads
from waypost.devtools.fake_answers import Behaviour, Recorded, error_body
from waypost.devtools.fake_block import FakeBlockMixin
from waypost.devtools.fake_media import FakeMediaMixin
from waypost.devtools.fake_receipts import FakeReceiptsMixin
from waypost.devtools.fake_template_create import FakeTemplateCreateMixin
from waypost.devtools.fake_templates import FakeTemplatesMixin, template_problem
from waypost.signing import sign

logger = logging.getLogger(__name__)


def status_payload(
    wa_message_id: str,
    status: str,
    *,
    phone_number_id: str,
    recipient_id: str,
    callback_data: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    pricing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The status webhook Meta posts for one send."""
    item = payloads.status(
        wa_message_id,
        status,
        callback=callback_data,
        errors=errors or None,
        recipient_id=recipient_id,
        pricing=pricing,
    )
    return payloads.statuses(
        item, waba_id="fake-waba", phone_number_id=phone_number_id, display_phone_number="15550000000"
    )


class FakeGraph(FakeMediaMixin, FakeBlockMixin, FakeTemplatesMixin, FakeTemplateCreateMixin, FakeReceiptsMixin):
    def __init__(
        self,
        *,
        access_token: str = "fake-access-token",
        webhook_url: str | None = None,
        app_secret: str | None = None,
        auto_statuses: tuple[str, ...] = (),
        failure_rate: float = 0.0,
        hang_rate: float = 0.0,
        hang_seconds: float = 30.0,
        seed: int | None = None,
    ) -> None:
        self.access_token = access_token
        self.webhook_url = webhook_url
        self.app_secret = app_secret
        self.auto_statuses = auto_statuses
        # the pricing the first automatic delivered/read status carries, as Meta's does
        self.pricing: dict[str, Any] | None = payloads.pricing()
        self.failure_rate = failure_rate
        self.hang_rate = hang_rate
        self.hang_seconds = hang_seconds
        self.url: str | None = None  # where it is served, once known
        self.requests: list[Recorded] = []
        # the wamids of the accepted sends, for the read receipts' check (a set: a scan of `requests`
        # grew with every send, to 2 ms of the fake's CPU per read call after the suite's early phases)
        self.sent_ids: set[str] = set()
        self.script: deque[Behaviour] = deque()
        self._init_media()
        self._init_block()
        self._init_templates()
        self._init_template_create()
        self._init_receipts()
        self._random = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(
            routes=[
                Route("/{version}/{phone_number_id}/messages", self.send, methods=["POST"]),
                Route("/{version}/{phone_number_id}/media", self.upload, methods=["POST"]),
                Route("/{version}/{phone_number_id}/block_users", self.block_users, methods=["POST", "DELETE"]),
                Route("/{version}/{waba_id}/message_templates", self.list_templates, methods=["GET"]),
                Route("/{version}/{waba_id}/message_templates", self.create_template, methods=["POST"]),
                Route("/_fake/templates", self.templates_endpoint, methods=["PUT"]),
                Route("/_fake/heard", self.heard_endpoint, methods=["POST"]),
                Route("/_fake/requests", self.list_requests, methods=["GET"]),
                Route("/_fake/receipts", self.list_receipts, methods=["GET"]),
                Route("/_fake/script", self.add_script, methods=["POST"]),
                Route("/_fake/config", self.configure, methods=["POST"]),
                Route("/_fake/status", self.post_status_endpoint, methods=["POST"]),
                Route("/_fake/media/{media_id}", self.media_download, methods=["GET"]),
                Route("/_fake/media/{media_id}", self.media_upload, methods=["PUT"]),
                # last: its pattern also matches /_fake/requests
                Route("/{version}/{media_id}", self.media_lookup, methods=["GET"]),
            ]
        )

    def accepted(self) -> list[Recorded]:
        return [r for r in self.requests if r.accepted]

    def next_behaviour(self) -> Behaviour:
        if self.script:
            return self.script.popleft()
        roll = self._random.random()
        if roll < self.hang_rate:
            return Behaviour(status=503, hang=self.hang_seconds, accept=False)
        if roll < self.hang_rate + self.failure_rate:
            return self._random.choice(
                [Behaviour(500, 131000), Behaviour(503), Behaviour(400, 130429, retry_after="1")]
            )
        return Behaviour()

    @staticmethod
    def validate(body: Any) -> str | None:
        """What Meta would refuse in this send (error code 100), or None."""
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return "messaging_product must be 'whatsapp'"
        if not body.get("to") and not body.get("recipient"):
            return "'to' (or 'recipient') is required"
        kind = body.get("type", "text")
        problem = FakeGraph.content_problem(kind, body.get(kind))
        if problem:
            return problem
        callback = body.get("biz_opaque_callback_data")
        if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
            return "biz_opaque_callback_data must be a string of at most 512 characters"
        context = body.get("context")
        if context is not None and not isinstance((context or {}).get("message_id"), str):
            return "context.message_id must be a string"
        return None

    @staticmethod
    def content_problem(kind: Any, content: Any) -> str | None:
        """What Meta would refuse in the `kind` object of a send (waypost.kinds holds the limits)."""
        if kind == "text":
            if not isinstance(content, dict) or not isinstance(content.get("body"), str) or not content["body"].strip():
                return "text.body is required"
            if len(content["body"]) > kinds.TEXT_MAX:
                return f"text.body is longer than {kinds.TEXT_MAX} characters"
            return None
        if kind in kinds.OUTBOUND_MEDIA_TYPES:
            if not isinstance(content, dict) or not (content.get("id") or content.get("link")):
                return f"{kind}.id or {kind}.link is required"
            caption = content.get("caption")
            if caption is not None and (kind in ("audio", "sticker") or len(str(caption)) > kinds.CAPTION_MAX):
                return f"{kind}.caption is not allowed or longer than {kinds.CAPTION_MAX} characters"
            return None
        try:
            if kind == "interactive":
                kinds.check_interactive(content)
            elif kind == "reaction":
                kinds.check_reaction(content)
            elif kind == "template":
                return template_problem(content)
            else:
                return f"this fake does not send {kind!r} messages"
        except kinds.InvalidMessage as exc:
            return str(exc)
        return None

    async def send(self, request: Request) -> JSONResponse:
        phone_number_id = request.path_params["phone_number_id"]
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(error_body(190, "Invalid OAuth access token."), status_code=401)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(error_body(100, "The request body is not JSON"), status_code=400)
        if isinstance(body, dict) and "status" in body:  # a read receipt (with the typing indicator?)
            return await self.receipt(phone_number_id, body)
        problem = self.validate(body)
        if problem:
            self.requests.append(Recorded(time.time(), phone_number_id, body, 400, False, None))
            return JSONResponse(error_body(100, problem), status_code=400)
        refusal = self.template_refusal(body["template"]) if body.get("type") == "template" else None
        if refusal:  # a listed template Meta cannot send now (paused, disabled, not approved)
            self.requests.append(Recorded(time.time(), phone_number_id, body, 400, False, None))
            return JSONResponse(error_body(*refusal), status_code=400)
        mismatch = self.template_mismatch(body)
        if mismatch:  # Meta checks the parameters against the approved template
            self.requests.append(Recorded(time.time(), phone_number_id, body, 400, False, None))
            refused = error_body(132000)
            refused["error"]["error_data"]["details"] = mismatch
            return JSONResponse(refused, status_code=400)

        behaviour = self.next_behaviour()
        accepted = behaviour.status == 200 if behaviour.accept is None else behaviour.accept
        # Unique across restarts, like Meta's: a dev database outlives the fake's process.
        wa_message_id = f"wamid.FAKE{uuid.uuid4().hex}" if accepted else None
        self.requests.append(Recorded(time.time(), phone_number_id, body, behaviour.status, accepted, wa_message_id))
        if wa_message_id is not None:  # accepted
            self.sent_ids.add(wa_message_id)
            self._schedule_statuses(phone_number_id, body, wa_message_id)
        if behaviour.hang:
            await asyncio.sleep(behaviour.hang)
        if behaviour.status != 200:
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else None
            return JSONResponse(error_body(behaviour.code or 131000), status_code=behaviour.status, headers=headers)
        to = body.get("to") or body.get("recipient")
        contact = {"input": to, "wa_id": str(to).lstrip("+")} if body.get("to") else {"input": to, "user_id": to}
        return JSONResponse(
            {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wa_message_id}]}
        )

    def _schedule_statuses(self, phone_number_id: str, body: dict[str, Any], wa_message_id: str) -> None:
        if not self.auto_statuses or not self.webhook_url:
            return
        task = asyncio.get_running_loop().create_task(
            self._post_statuses(
                phone_number_id,
                str(body.get("to") or body.get("recipient")),
                wa_message_id,
                body.get("biz_opaque_callback_data"),
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_statuses(
        self, phone_number_id: str, recipient: str, wa_message_id: str, callback: str | None
    ) -> None:
        priced = False
        for status in self.auto_statuses:
            await asyncio.sleep(0.05)
            pricing = self.pricing if status in ("delivered", "read") and not priced else None
            priced = priced or pricing is not None
            try:
                await self.post_status(
                    wa_message_id,
                    status,
                    phone_number_id=phone_number_id,
                    recipient_id=recipient,
                    callback_data=callback,
                    pricing=pricing,
                )
            except httpx.HTTPError as exc:
                # the web process is away (restarting, or killed by a benchmark): one line, not a
                # traceback of a task nobody awaits; the message's later statuses are not sent either
                logger.warning("fake Graph API: %s status of %s not delivered: %r", status, wa_message_id, exc)
                return

    async def post_status(
        self,
        wa_message_id: str,
        status: str,
        *,
        phone_number_id: str = "fake-phone",
        recipient_id: str = "0",
        callback_data: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        pricing: dict[str, Any] | None = None,
    ) -> int:
        """POST a signed status webhook to `webhook_url`; returns the HTTP status it got."""
        if not self.webhook_url or not self.app_secret:
            raise RuntimeError("webhook_url and app_secret are needed to post status webhooks")
        content = json.dumps(
            status_payload(
                wa_message_id,
                status,
                phone_number_id=phone_number_id,
                recipient_id=recipient_id,
                callback_data=callback_data,
                errors=errors,
                pricing=pricing,
            )
        ).encode()
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                self.webhook_url,
                content=content,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(self.app_secret, content)},
            )
        return response.status_code

    async def list_requests(self, request: Request) -> JSONResponse:
        """Every request answered, or with ?from=N those after the first N (a poller reads only what is new)."""
        try:
            start = int(request.query_params.get("from") or 0)
        except ValueError:
            return JSONResponse({"error": "from must be an integer"}, status_code=400)
        return JSONResponse([r.as_dict() for r in self.requests[max(0, start) :]])

    async def list_receipts(self, request: Request) -> JSONResponse:
        return JSONResponse([r.as_dict() for r in self.receipts])

    async def add_script(self, request: Request) -> JSONResponse:
        """Queue behaviours for the next sends, or with ?for=uploads (receipts) for the next media uploads
        (read/typing calls)."""
        items = await request.json()
        scripts = {"uploads": self.upload_script, "receipts": self.receipt_script}
        script = scripts.get(request.query_params.get("for", ""), self.script)
        script.extend(Behaviour(**item) for item in items)
        return JSONResponse({"queued": len(script)})

    async def configure(self, request: Request) -> JSONResponse:
        for key, value in (await request.json()).items():
            if key not in {"failure_rate", "hang_rate", "hang_seconds", "auto_statuses", "webhook_url", "app_secret"}:
                return JSONResponse({"error": f"unknown setting {key}"}, status_code=400)
            setattr(self, key, tuple(value) if key == "auto_statuses" else value)
        return JSONResponse({"ok": True})

    async def post_status_endpoint(self, request: Request) -> JSONResponse:
        data = await request.json()
        code = await self.post_status(data.pop("wa_message_id"), data.pop("status"), **data)
        return JSONResponse({"webhook_status": code})


def main() -> None:
    """`python -m waypost.devtools.fake_graph --port 8081`: serve the fake on 127.0.0.1."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--access-token", default="fake-access-token")
    parser.add_argument("--webhook-url", help="where to post status webhooks")
    parser.add_argument("--app-secret", help="signs the status webhooks")
    parser.add_argument("--auto-statuses", default="", help="comma-separated, e.g. sent,delivered,read")
    args = parser.parse_args()
    fake = FakeGraph(
        access_token=args.access_token,
        webhook_url=args.webhook_url,
        app_secret=args.app_secret,
        auto_statuses=tuple(s for s in args.auto_statuses.split(",") if s),
    )
    fake.url = f"http://{args.host}:{args.port}"  # the media URLs its lookups hand out point here
    print(f"fake Graph API listening on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
