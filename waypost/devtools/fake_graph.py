"""A fake WhatsApp Cloud API send endpoint, for tests, benchmarks and `waypost dev`.

It validates a send like Meta does, answers with a wamid, records every request, can be told
(in Python or over HTTP under /_fake/) to answer errors or to hang, and can post signed status
webhooks (sent, delivered, read, failed; echoing biz_opaque_callback_data) back to Waypost. It
serves media files too (`add_media`): a fresh URL per lookup, which can fail, hang, drip or expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from waypost import kinds
from waypost.devtools import payloads
from waypost.signing import sign

ERRORS = {  # code -> (HTTP status, details), as Meta answers them (reference A6)
    130429: (400, "Cloud API message throughput has been reached."),
    131056: (400, "Too many messages sent from the sender phone number to the same recipient phone number."),
    131000: (500, "Message failed to send due to an unknown error."),
    131047: (400, "More than 24 hours have passed since the recipient last replied to the sender number."),
    131026: (400, "Message undeliverable."),
    190: (401, "Your access token has expired."),
    100: (400, "Invalid parameter."),
}


@dataclasses.dataclass
class Behaviour:
    """How to answer one request. `hang` seconds of silence first; `accept` decides whether Meta
    "took" the message even if the answer is an error or never arrives (a lost response)."""

    status: int = 200
    code: int | None = None
    hang: float = 0.0
    accept: bool | None = None  # default: accepted iff status is 200
    retry_after: str | None = None


@dataclasses.dataclass
class FakeMedia:
    """A file the fake serves for a media id, and how its next requests fail, hang or expire."""

    data: bytes
    mime_type: str
    fail_lookups: int = 0  # the next lookups (GET /{media-id}) answer 503
    fail_downloads: int = 0  # the next downloads of its URL answer 503
    url_host: str | None = None  # the URL names this host instead of the fake's own
    sha256: str | None = None  # reported instead of the file's own
    # The next `hang_downloads` downloads send `hang_after_bytes` of the file (0: not even the
    # headers), then go silent for `hang_seconds` or until `release` is set.
    hang_downloads: int = 0
    hang_after_bytes: int = 0
    hang_seconds: float = 60.0
    release: threading.Event = dataclasses.field(default_factory=threading.Event)
    # The next `slow_downloads` downloads drip: DRIP_BYTES every DRIP_SECONDS, each read in time,
    # the whole never (only the worker's deadline for an attempt stops them).
    slow_downloads: int = 0
    # A URL from a lookup stops working (answers as an expired one) after this many seconds or
    # downloads; None: never.
    url_ttl: float | None = None
    url_uses: int | None = None
    expired_urls: int = 0  # the next lookups hand out a URL that has expired already (a late download)


@dataclasses.dataclass
class IssuedUrl:
    media_id: str
    issued_at: float
    expired: bool = False
    uses: int = 0


DRIP_BYTES = 16 * 1024
DRIP_SECONDS = 0.2


@dataclasses.dataclass
class Upload:
    """A file uploaded to the media endpoint (POST /{phone-number-id}/media), accepted or not."""

    at: float
    phone_number_id: str
    mime_type: str | None
    filename: str | None
    size: int
    sha256: str
    status: int
    media_id: str | None


@dataclasses.dataclass
class Recorded:
    at: float
    phone_number_id: str
    body: dict[str, Any]
    status: int
    accepted: bool
    wa_message_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def error_body(code: int, message: str | None = None) -> dict[str, Any]:
    details = ERRORS.get(code, (400, message or "error"))[1]
    return {
        "error": {
            "message": f"(#{code}) {message or details}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "AFakeTraceId",
        }
    }


def status_payload(
    wa_message_id: str,
    status: str,
    *,
    phone_number_id: str,
    recipient_id: str,
    callback_data: str | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The status webhook Meta posts for one send."""
    item = payloads.status(
        wa_message_id, status, callback=callback_data, errors=errors or None, recipient_id=recipient_id
    )
    return payloads.statuses(
        item, waba_id="fake-waba", phone_number_id=phone_number_id, display_phone_number="15550000000"
    )


class FakeGraph:
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
        self.failure_rate = failure_rate
        self.hang_rate = hang_rate
        self.hang_seconds = hang_seconds
        self.url: str | None = None  # where it is served, once known
        self.requests: list[Recorded] = []
        self.script: deque[Behaviour] = deque()
        self.media: dict[str, FakeMedia] = {}
        # (what, media id, Authorization header) for every media lookup and download
        self.media_requests: list[tuple[str, str, str | None]] = []
        # (what, token) for every URL a lookup issued ("issued") and every download of one ("served",
        # "expired": asked after its url_ttl or url_uses ran out, "hung", "dripped")
        self.media_urls: list[tuple[str, str]] = []
        self._issued: dict[str, IssuedUrl] = {}
        self.uploads: list[Upload] = []
        self.upload_script: deque[Behaviour] = deque()  # how the next uploads answer (default: 200)
        self._random = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = Starlette(
            routes=[
                Route("/{version}/{phone_number_id}/messages", self.send, methods=["POST"]),
                Route("/{version}/{phone_number_id}/media", self.upload, methods=["POST"]),
                Route("/_fake/requests", self.list_requests, methods=["GET"]),
                Route("/_fake/script", self.add_script, methods=["POST"]),
                Route("/_fake/config", self.configure, methods=["POST"]),
                Route("/_fake/status", self.post_status_endpoint, methods=["POST"]),
                Route("/_fake/media/{media_id}", self.media_download, methods=["GET"]),
                Route("/_fake/media/{media_id}", self.media_upload, methods=["PUT"]),
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
        problem = self.validate(body)
        if problem:
            self.requests.append(Recorded(time.time(), phone_number_id, body, 400, False, None))
            return JSONResponse(error_body(100, problem), status_code=400)

        behaviour = self.next_behaviour()
        accepted = behaviour.status == 200 if behaviour.accept is None else behaviour.accept
        # Unique across restarts, like Meta's: a dev database outlives the fake's process.
        wa_message_id = f"wamid.FAKE{uuid.uuid4().hex}" if accepted else None
        self.requests.append(Recorded(time.time(), phone_number_id, body, behaviour.status, accepted, wa_message_id))
        if wa_message_id is not None:  # accepted
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
        for status in self.auto_statuses:
            await asyncio.sleep(0.05)
            await self.post_status(
                wa_message_id, status, phone_number_id=phone_number_id, recipient_id=recipient, callback_data=callback
            )

    async def post_status(
        self,
        wa_message_id: str,
        status: str,
        *,
        phone_number_id: str = "fake-phone",
        recipient_id: str = "0",
        callback_data: str | None = None,
        errors: list[dict[str, Any]] | None = None,
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
            )
        ).encode()
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                self.webhook_url,
                content=content,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(self.app_secret, content)},
            )
        return response.status_code

    def accepted_uploads(self) -> list[Upload]:
        return [u for u in self.uploads if u.media_id is not None]

    async def upload(self, request: Request) -> JSONResponse:
        """POST /{phone-number-id}/media, as Meta answers it: the file's type must be one WhatsApp
        sends and its size within the kind's limit (code 100 otherwise); the answer is a media id,
        which a send may then name and a lookup finds."""
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(error_body(190, "Invalid OAuth access token."), status_code=401)
        form = await request.form()
        file, mime_type = form.get("file"), form.get("type")
        data = await file.read() if isinstance(file, UploadFile) else b""
        record = Upload(
            time.time(),
            request.path_params["phone_number_id"],
            mime_type if isinstance(mime_type, str) else None,
            file.filename if isinstance(file, UploadFile) else None,
            len(data),
            hashlib.sha256(data).hexdigest(),
            400,
            None,
        )
        self.uploads.append(record)
        kind = next((k for k, types in kinds.OUTBOUND_MEDIA_TYPES.items() if mime_type in types), None)
        if form.get("messaging_product") != "whatsapp":
            return JSONResponse(error_body(100, "messaging_product must be 'whatsapp'"), status_code=400)
        if not data or kind is None:
            return JSONResponse(error_body(100, f"Param file must be a file of a supported type, not {mime_type}"), 400)
        if len(data) > kinds.MEDIA_SIZE_LIMITS[kind]:
            return JSONResponse(error_body(100, f"The file is larger than WhatsApp allows for {kind}"), 400)
        behaviour = self.upload_script.popleft() if self.upload_script else Behaviour()
        if behaviour.hang:
            await asyncio.sleep(behaviour.hang)
        record.status = behaviour.status
        if behaviour.status != 200:
            return JSONResponse(error_body(behaviour.code or 131000), status_code=behaviour.status)
        record.media_id = str(random.randrange(10**15, 10**16))
        self.add_media(record.media_id, data, str(mime_type))
        return JSONResponse({"id": record.media_id})

    def add_media(self, media_id: str, data: bytes, mime_type: str, **options: Any) -> FakeMedia:
        self.media[media_id] = FakeMedia(data, mime_type, **options)
        return self.media[media_id]

    async def media_lookup(self, request: Request) -> Response:
        """GET /{media-id}, as Meta answers it: a short-lived URL and what the file is."""
        media_id = request.path_params["media_id"]
        self.media_requests.append(("lookup", media_id, request.headers.get("authorization")))
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return JSONResponse(error_body(190, "Invalid OAuth access token."), status_code=401)
        media = self.media.get(media_id)
        if media is None:
            return JSONResponse(error_body(100, "Unsupported get request."), status_code=400)
        if media.fail_lookups > 0:
            media.fail_lookups -= 1
            return JSONResponse(error_body(131000, "Something went wrong"), status_code=503)
        token = uuid.uuid4().hex  # each lookup a new URL, as Meta's (mid, ext, hash) differ each time
        expired = media.expired_urls > 0  # as if the download came after Meta's 5 minutes
        media.expired_urls -= expired
        self._issued[token] = IssuedUrl(media_id, time.monotonic(), expired=expired)
        self.media_urls.append(("issued", token))
        url = httpx.URL(f"{self.url}/_fake/media/{media_id}", params={"token": token})
        if media.url_host:
            url = url.copy_with(host=media.url_host)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": str(url),
                "mime_type": media.mime_type,
                "sha256": media.sha256 or hashlib.sha256(media.data).hexdigest(),
                "file_size": str(len(media.data)),
                "id": media_id,
            }
        )

    async def media_download(self, request: Request) -> Response:
        media_id = request.path_params["media_id"]
        self.media_requests.append(("download", media_id, request.headers.get("authorization")))
        if request.headers.get("authorization") != f"Bearer {self.access_token}":
            return Response(status_code=401)
        media = self.media.get(media_id)
        issued = self._issued.get(token := request.query_params.get("token", ""))
        if media is None or issued is None or issued.media_id != media_id:
            return Response(status_code=404)
        issued.uses += 1
        if (
            issued.expired
            or (media.url_ttl is not None and time.monotonic() - issued.issued_at > media.url_ttl)
            or (media.url_uses is not None and issued.uses > media.url_uses)
        ):
            # Meta's reference lists 404 among the download's answers; "must be re-retrieved if expired"
            self.media_urls.append(("expired", token))
            return JSONResponse(error_body(100, "The media URL has expired."), status_code=404)
        if media.fail_downloads > 0:
            media.fail_downloads -= 1
            return Response(status_code=503)
        if media.hang_downloads > 0:
            media.hang_downloads -= 1
            self.media_urls.append(("hung", token))
            if not media.hang_after_bytes:
                await self._hang(request, media)
                return Response(media.data, media_type=media.mime_type)
            return StreamingResponse(self._hang_midway(request, media), media_type=media.mime_type)
        if media.slow_downloads > 0:
            media.slow_downloads -= 1
            self.media_urls.append(("dripped", token))
            return StreamingResponse(_drip(media.data), media_type=media.mime_type)
        self.media_urls.append(("served", token))
        return Response(media.data, media_type=media.mime_type, headers={"Content-Length": str(len(media.data))})

    @staticmethod
    async def _hang(request: Request, media: FakeMedia) -> None:
        """Silence until released, `hang_seconds` pass, or the client gives up."""
        deadline = time.monotonic() + media.hang_seconds
        while not media.release.is_set() and time.monotonic() < deadline:
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.05)

    async def _hang_midway(self, request: Request, media: FakeMedia) -> AsyncIterator[bytes]:
        yield media.data[: media.hang_after_bytes]
        await self._hang(request, media)
        yield media.data[media.hang_after_bytes :]

    async def media_upload(self, request: Request) -> JSONResponse:
        """PUT /_fake/media/{media-id} with the file as the body: serve it as that media id from now on
        (`waypost simulate --kind image|voice|document` against `waypost dev`)."""
        mime_type = request.headers.get("content-type", "application/octet-stream")
        media = self.add_media(request.path_params["media_id"], await request.body(), mime_type)
        return JSONResponse({"id": request.path_params["media_id"], "file_size": len(media.data)})

    async def list_requests(self, request: Request) -> JSONResponse:
        return JSONResponse([r.as_dict() for r in self.requests])

    async def add_script(self, request: Request) -> JSONResponse:
        """Queue behaviours for the next sends, or with ?for=uploads for the next media uploads."""
        items = await request.json()
        script = self.upload_script if request.query_params.get("for") == "uploads" else self.script
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


async def _drip(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), DRIP_BYTES):
        yield data[start : start + DRIP_BYTES]
        await asyncio.sleep(DRIP_SECONDS)


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
    print(f"fake Graph API listening on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(fake.app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
