"""The media side of the fake Graph API, mixed into FakeGraph (waypost/devtools/fake_graph.py).

It serves files (`add_media`): each lookup (GET /{media-id}) issues a fresh URL, which can fail,
hang, drip or expire; and it takes uploads (POST /{phone-number-id}/media), which answer a media id
a send may then name, or the error a script (`upload_script`) asks for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from waypost import kinds
from waypost.devtools.fake_answers import Behaviour, error_body


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


class FakeMediaMixin:
    """Media files served and uploads taken; FakeGraph mounts these handlers among its routes."""

    access_token: str
    url: str | None

    def _init_media(self) -> None:
        self.media: dict[str, FakeMedia] = {}
        # (what, media id, Authorization header) for every media lookup and download
        self.media_requests: list[tuple[str, str, str | None]] = []
        # (what, token) for every URL a lookup issued ("issued") and every download of one ("served",
        # "expired": asked after its url_ttl or url_uses ran out, "hung", "dripped")
        self.media_urls: list[tuple[str, str]] = []
        self._issued: dict[str, IssuedUrl] = {}
        self.uploads: list[Upload] = []
        self.upload_script: deque[Behaviour] = deque()  # how the next uploads answer (default: 200)

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


async def _drip(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), DRIP_BYTES):
        yield data[start : start + DRIP_BYTES]
        await asyncio.sleep(DRIP_SECONDS)
