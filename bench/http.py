"""A minimal HTTP/1.1 keep-alive client for the load driver.

httpx's async pool costs ~4-5 ms of CPU per request here and falls behind a trivial endpoint at
100/s on this machine, so a driver built on it measures itself. This one writes each request on an
idle kept-alive connection (a new one while fewer than `max_connections` are open) and reads a
Content-Length answer: a fraction of that CPU, so the server is what is measured. Only what the
benchmarks need: 127.0.0.1, GET and POST, answers with Content-Length (Starlette's).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit


class Client:
    def __init__(self, base: str, max_connections: int = 256) -> None:
        url = urlsplit(base)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        """The answer's status and body; a connection error raises OSError (or IncompleteReadError)."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        request = head.encode() + b"\r\n" + body
        async with self._slots:
            while True:
                reused = bool(self._idle)
                reader, writer = self._idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
                try:
                    writer.write(request)
                    status, answer, keep = await _read(reader)
                    break
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    writer.close()
                    # uvicorn closes a connection idle for 5 s: a kept one found closed before any answer
                    # byte is retried on a new connection (the server never read it), as browsers do
                    if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                        raise
                except BaseException:
                    writer.close()
                    raise
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return status, answer

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        return (await self.request("POST", path, body, headers))[0]

    async def get_json(self, path: str) -> Any:
        status, body = await self.request("GET", path)
        if status != 200:
            raise OSError(f"GET {path}: HTTP {status}")
        return json.loads(body)

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _read(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" not in fields:
        raise OSError(f"answer without Content-Length ({fields.get('transfer-encoding', 'no length')})")
    body = await reader.readexactly(int(fields["content-length"]))
    return status, body, fields.get("connection", "").lower() != "close"
