"""Where inbound files' bytes live: PostgreSQL by default (media_chunks: one database holds and backs
up everything), or an S3-compatible object store when WAYPOST_MEDIA_STORE_URL names one
(waypost.s3). Shared by the worker (writes, purges) and the inbox (reads); both only ever hold a
chunk or a part of a file at a time, never the whole file.

New files go to the configured store; each `media` row says where its own bytes went (`storage`,
`object_bucket`, `object_key`), so files stored before a switch are read and purged where they are.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from psycopg import AsyncConnection

from waypost.db import DictPool, execute, fetch_all, fetch_optional, fetch_value
from waypost.errors import MediaStoreUnavailable
from waypost.settings import Settings

if TYPE_CHECKING:
    from waypost.s3 import S3Store

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024  # a media_chunks row; and what a read hands the inbox at a time


def describe(settings: Settings) -> str:
    """Where new files go, for `waypost status` and the logs (ConfigurationError if nowhere valid)."""
    target = settings.media_store()
    if target is None:
        return "PostgreSQL (media_chunks)"
    bucket, prefix = target
    return f"S3 bucket {bucket!r}, prefix {prefix!r}, at {settings.s3_endpoint_url or 'AWS'}"


# What runs in the transaction that marks a file stored.
Then = Callable[[AsyncConnection[Any]], Awaitable[None]]


class MediaWriter(abc.ABC):
    """One attempt at storing one file: `write` its bytes in order, then `commit`. Leaving the
    `MediaStore.writer` block without a commit (an exception, a timeout) leaves nothing behind."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    async def commit(self, *, mime_type: str | None, byte_size: int, then: Then | None = None) -> None:
        """The file is whole (its checks passed): make it durable and mark the row `stored`; `then`
        runs in that same transaction (the worker queues what waits for the file)."""


async def mark_stored(
    conn: AsyncConnection[Any],
    media_id: int,
    *,
    mime_type: str | None,
    byte_size: int,
    storage: str,
    bucket: str | None = None,
    key: str | None = None,
    then: Then | None = None,
) -> None:
    await execute(
        conn,
        "media_stored",
        media_id=media_id,
        mime_type=mime_type,
        byte_size=byte_size,
        storage=storage,
        object_bucket=bucket,
        object_key=key,
    )
    await execute(conn, "media_message_changed", media_id=media_id)
    if then is not None:
        await then(conn)


class PostgresWriter(MediaWriter):
    """Chunks of CHUNK_BYTES into media_chunks, all in the caller's one transaction."""

    def __init__(self, conn: AsyncConnection[Any], media_id: int) -> None:
        self.conn = conn
        self.media_id = media_id
        self.pending = bytearray()
        self.seq = 0

    async def write(self, data: bytes) -> None:
        self.pending += data
        while len(self.pending) >= CHUNK_BYTES:
            await self._insert(bytes(self.pending[:CHUNK_BYTES]))
            del self.pending[:CHUNK_BYTES]

    async def _insert(self, data: bytes) -> None:
        await execute(self.conn, "media_chunk_insert", media_id=self.media_id, seq=self.seq, data=data)
        self.seq += 1

    async def commit(self, *, mime_type: str | None, byte_size: int, then: Then | None = None) -> None:
        if self.pending:
            await self._insert(bytes(self.pending))
            self.pending.clear()
        await mark_stored(
            self.conn, self.media_id, mime_type=mime_type, byte_size=byte_size, storage="postgres", then=then
        )


class MediaStore:
    """The configured store for new files, and a reader for every row's own store. One per process."""

    def __init__(self, settings: Settings) -> None:
        target = settings.media_store()  # ConfigurationError: at start, not at the first file
        self.s3: S3Store | None = None
        if target is not None:
            from waypost.s3 import S3Store  # boto3 is loaded only where S3 is configured

            self.s3 = S3Store(settings, *target)
        logger.info("media files go to %s", describe(settings))

    @property
    def name(self) -> str:
        return "s3" if self.s3 else "postgres"

    @contextlib.asynccontextmanager
    async def writer(self, pool: DictPool, media_id: int) -> AsyncIterator[MediaWriter]:
        if self.s3 is not None:
            async with self.s3.writer(pool, media_id) as writer:
                yield writer
            return
        async with pool.connection() as conn, conn.transaction():
            await execute(conn, "media_clear_chunks", media_id=media_id)  # an earlier attempt's, if any
            yield PostgresWriter(conn, media_id)

    def chunks(self, pool: DictPool, media: Mapping[str, Any]) -> AsyncGenerator[bytes, None]:
        """A stored file's bytes, a chunk at a time, from where its row says they are. An empty
        iterator when they are not there; MediaStoreUnavailable when the store does not answer."""
        if media["storage"] == "s3":
            if self.s3 is None:
                logger.error("media %s is in S3 but WAYPOST_MEDIA_STORE_URL names no S3 store", media["id"])
                raise MediaStoreUnavailable("this file is in an S3 store that is not configured")
            return self.s3.chunks(media["object_bucket"], media["object_key"])
        return _postgres_chunks(pool, media["id"])

    async def purge_old(self, pool: DictPool, seconds: float) -> int:
        """Delete the bytes of files stored longer ago than `seconds`: their chunks, or their objects
        (an object already gone counts as deleted). A file whose object could not be deleted stays
        `stored` and is tried again by the next sweep. Returns how many were purged."""
        async with pool.connection() as conn, conn.transaction():
            gone = await self._bytes_deleted(await fetch_all(conn, "sweep_old_media", seconds=seconds))
            if not gone:
                return 0
            return int(await fetch_value(conn, "sweep_purge_media", media_ids=gone))

    async def discard_staged(self, pool: DictPool, media_id: int) -> None:
        """Remove a staged file that no message will send (its object too); one the sweep is already
        removing is left to it."""
        async with pool.connection() as conn, conn.transaction():
            row = await fetch_optional(conn, "media_staged", media_id=media_id)
            if row is not None:
                await self._delete_staged(conn, [row])

    async def purge_staged(self, pool: DictPool, seconds: float) -> int:
        """Remove staged files older than `seconds` that no message took (a web process died between
        the write and the queue); how many."""
        async with pool.connection() as conn, conn.transaction():
            rows = await fetch_all(conn, "sweep_stale_staged_media", seconds=seconds)
            return await self._delete_staged(conn, rows) if rows else 0

    async def _delete_staged(self, conn: AsyncConnection[Any], rows: list[Any]) -> int:
        gone = await self._bytes_deleted(rows)
        return await execute(conn, "media_delete_staged", media_ids=gone) if gone else 0

    async def _bytes_deleted(self, rows: list[Any]) -> list[int]:
        """The ids of these rows whose bytes may go with the row: their chunks (deleted by the caller's
        statement), or their S3 objects, deleted here first (one that cannot be is kept for next time)."""
        gone = [row["id"] for row in rows if row["storage"] != "s3"]
        objects = [(row["id"], row["object_bucket"], row["object_key"]) for row in rows if row["storage"] == "s3"]
        if objects and self.s3 is None:
            logger.error("%s file(s) are in S3, which is not configured: kept", len(objects))
        elif objects and self.s3 is not None:
            gone += await self.s3.delete(objects)
        return gone

    async def aclose(self) -> None:
        if self.s3 is not None:
            self.s3.close()


async def _postgres_chunks(pool: DictPool, media_id: int) -> AsyncGenerator[bytes, None]:
    seq = 0
    while True:
        async with pool.connection() as conn:  # not held between chunks: a slow reader holds no connection
            chunk = await fetch_optional(conn, "media_chunk", media_id=media_id, seq=seq)
        if chunk is None:
            return
        yield bytes(chunk["data"])
        seq += 1
