"""Files in an S3-compatible object store (AWS S3, MinIO, Cloudflare R2, Backblaze B2, Ceph...), through
boto3, the AWS SDK: the most used and best kept S3 client, which speaks to any endpoint. Its calls
block, so each runs in a thread (`asyncio.to_thread`); the event loop never waits on the network.

A file is one object, `{prefix}{media id}`. It is written as it downloads: up to PART_BYTES in one
`PutObject`, larger files as a multipart upload of PART_BYTES parts (S3's minimum part is 5 MiB), so a
100 MB document needs a part or two of memory, never its size. The multipart upload is completed only
after the caller's checks (size, SHA-256) pass, and aborted on any failure, so an attempt that fails
leaves no object and no stray parts; the next attempt writes the same key afresh.

The credentials go only to WAYPOST_S3_ENDPOINT_URL (AWS when empty): boto3 is told to ignore the
endpoint and credential environment variables of its own when an endpoint is set (settings refuse an
endpoint without credentials), and the secret is a SecretStr, redacted from every log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from waypost.db import DictPool
from waypost.errors import MediaStoreUnavailable
from waypost.media_store import CHUNK_BYTES, MediaWriter, Then, mark_stored
from waypost.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

PART_BYTES = 8 * 1024 * 1024
MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
S3Failure = (BotoCoreError, ClientError)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"S3 {exc.operation_name}: {error.get('Code', '?')}: {error.get('Message', '')}".strip(": ")
    return f"S3: {type(exc).__name__}: {exc}"


class S3Store:
    def __init__(self, settings: Settings, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = settings.s3_endpoint_url
        secret = settings.s3_secret_access_key
        config = Config(
            region_name=settings.s3_region,
            connect_timeout=settings.send_connect_timeout,
            read_timeout=max(settings.send_read_timeout, 30.0),
            retries={"max_attempts": 3, "mode": "standard"},
            # path-style (`endpoint/bucket/key`) is what MinIO and most self-hosted stores expect
            s3={"addressing_style": "path" if self.endpoint else "auto"},
            # Checksums only where S3 requires them: several S3-compatible stores refuse the newer
            # default ones (the SHA-256 Waypost checks is its own, computed as the file downloads).
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            ignore_configured_endpoint_urls=True,  # type: ignore[call-arg]  # (botocore-stubs lag behind)
            max_pool_connections=max(10, settings.worker_concurrency + 2),
        )
        session = boto3.session.Session()
        self.client: S3Client = session.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret else None,
            config=config,
        )

    def key(self, media_id: int) -> str:
        return f"{self.prefix}{media_id}"

    @contextlib.asynccontextmanager
    async def writer(self, pool: DictPool, media_id: int) -> AsyncIterator[MediaWriter]:
        writer = S3Writer(self, pool, media_id)
        try:
            yield writer
        except BaseException:
            await writer.abort()
            raise

    async def chunks(self, bucket: str, key: str) -> AsyncGenerator[bytes, None]:
        try:
            answer = await asyncio.to_thread(self.client.get_object, Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in MISSING:
                logger.warning("media object s3://%s/%s is gone", bucket, key)
                return
            raise MediaStoreUnavailable(_reason(exc)) from exc
        except BotoCoreError as exc:
            raise MediaStoreUnavailable(_reason(exc)) from exc
        body = answer["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    async def delete(self, objects: list[tuple[int, str, str]]) -> list[int]:
        """Delete these objects (media id, bucket, key); the ids whose object is gone now, including
        those that were gone already (S3 answers a delete of a missing key with success). One
        DeleteObject each: not every S3-compatible store offers the batch DeleteObjects."""
        done = []
        for media_id, bucket, key in objects:
            try:
                await asyncio.to_thread(self.client.delete_object, Bucket=bucket, Key=key)
            except S3Failure as exc:
                if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in MISSING:
                    done.append(media_id)
                    continue
                logger.warning("sweep: media %s: object not deleted, kept for next time: %s", media_id, _reason(exc))
                continue
            done.append(media_id)
        return done

    def close(self) -> None:
        self.client.close()


class S3Writer(MediaWriter):
    def __init__(self, store: S3Store, pool: DictPool, media_id: int) -> None:
        self.store = store
        self.client = store.client
        self.pool = pool
        self.media_id = media_id
        self.key = store.key(media_id)
        self.pending = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []
        self.in_flight: asyncio.Future[Any] | None = None

    async def _call(self, method: Any, **kwargs: Any) -> Any:
        """A boto3 call in a thread, shielded: if the attempt is cancelled (its deadline), the call
        still finishes before abort() runs, so no part lands after the upload is aborted."""
        self.in_flight = asyncio.ensure_future(asyncio.to_thread(method, **kwargs))
        try:
            return await asyncio.shield(self.in_flight)
        except S3Failure as exc:
            raise MediaStoreUnavailable(_reason(exc)) from exc

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            room = PART_BYTES - len(self.pending)
            self.pending += view[:room]
            view = view[room:]
            if len(self.pending) == PART_BYTES:  # the buffer itself goes up, uncopied
                part, self.pending = self.pending, bytearray()
                await self._upload_part(part)

    async def _upload_part(self, body: bytearray) -> None:
        bucket = self.store.bucket
        if self.upload_id is None:
            answer = await self._call(
                self.client.create_multipart_upload, Bucket=bucket, Key=self.key, **_object_headers()
            )
            self.upload_id = answer["UploadId"]
        number = len(self.parts) + 1
        answer = await self._call(
            self.client.upload_part, Bucket=bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def commit(self, *, mime_type: str | None, byte_size: int, then: Then | None = None) -> None:
        bucket = self.store.bucket
        body, self.pending = self.pending, bytearray()
        if self.upload_id is None:  # it fitted in one part: one request
            await self._call(self.client.put_object, Bucket=bucket, Key=self.key, Body=body, **_object_headers())
        else:
            if body:
                await self._upload_part(body)
            await self._call(
                self.client.complete_multipart_upload,
                Bucket=bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self.parts},
            )
            self.upload_id = None  # complete: nothing to abort any more
        # If this fails, the object stays under its key until the next attempt overwrites it.
        async with self.pool.connection() as conn, conn.transaction():
            await mark_stored(
                conn,
                self.media_id,
                mime_type=mime_type,
                byte_size=byte_size,
                storage="s3",
                bucket=bucket,
                key=self.key,
                then=then,
            )

    async def abort(self) -> None:
        if self.in_flight is not None and not self.in_flight.done():
            with contextlib.suppress(BaseException):
                await self.in_flight
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        try:
            await asyncio.to_thread(
                self.client.abort_multipart_upload, Bucket=self.store.bucket, Key=self.key, UploadId=upload_id
            )
        except S3Failure as exc:
            # The store's lifecycle rule for incomplete uploads is the backstop (README "Inbound media").
            logger.warning("media %s: multipart upload %s not aborted: %s", self.media_id, upload_id, _reason(exc))


def _object_headers() -> dict[str, str]:
    """Objects are never meant to be served from the bucket itself; should it be public by mistake,
    a browser still downloads them rather than rendering a contact's HTML or SVG."""
    return {"ContentType": "application/octet-stream", "ContentDisposition": "attachment"}
