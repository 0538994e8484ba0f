"""The two JSON POSTs every reply makes to the Graph API (the send and the read receipt), over aiohttp.

httpx stays the client for the rest (media, templates, blocks). These two run once or twice per reply,
and aiohttp spends about a third of httpx's CPU on one (README "Issue 17, third session"). What matters
for exactly-once is kept whole: a failure is raised as one of two exceptions, by when it happened.
  NotSent    no connection could be had (refused, unreachable, TLS handshake, connect or pool timeout):
             no byte of the request left, so it may be sent again.
  MaybeSent  anything once a connection was had (read timeout, reset, a cut-off answer): Meta may
             have accepted the request.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
import urllib.request
from typing import Any

import aiohttp
import httpx

# Below the idle timeout of common servers (uvicorn's is 5 s): a connection the server is about to
# close is not reused, which would turn a send into MaybeSent for nothing.
KEEPALIVE_SECONDS = 4.0


class NotSent(Exception):
    """The request never left this process."""


class MaybeSent(Exception):
    """The request may have reached Meta; its answer did not come back whole."""


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)

    def as_httpx(self) -> httpx.Response:
        """For worker.graph.classify_response, shared with the httpx calls (failures only)."""
        return httpx.Response(self.status, headers=self.headers, content=self.body)


class JsonPoster:
    """One aiohttp session for a worker process, posting JSON under `base` with the access token.

    Only paths are taken, so the token goes to the configured Graph API host and nowhere else."""

    def __init__(self, base: str, token: str, *, connect_timeout: float, read_timeout: float) -> None:
        self._base = base.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # connect bounds the wait for a pooled connection too; total bounds a write that never drains
        self._timeout = aiohttp.ClientTimeout(
            total=connect_timeout + 2 * read_timeout, connect=connect_timeout, sock_read=read_timeout
        )
        self._proxy = _env_proxy(self._base)
        self._session: aiohttp.ClientSession | None = None  # made in the worker's running loop

    def _opened(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE_SECONDS),
                timeout=self._timeout,
                trust_env=False,  # it would read netrc and the proxy variables on every request
                # no cookies kept from Meta's answers or sent back: a stateless API (and 20-40 µs a call)
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(self, path: str, payload: dict[str, Any]) -> Answer:
        # the same bytes httpx sends for json=: compact, UTF-8
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        try:
            async with self._opened().post(
                self._base + path,
                data=data,
                headers=self._headers,
                proxy=self._proxy,
                allow_redirects=False,  # as httpx: the token is never carried to where a 3xx points
            ) as response:
                body = await response.read()
                return Answer(response.status, list(response.headers.items()), body)
        except aiohttp.InvalidURL:
            raise  # a setting's mistake, not a failure of this request
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            raise NotSent(f"{type(exc).__name__}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MaybeSent(f"{type(exc).__name__}: {exc}") from exc


def _env_proxy(base: str) -> str | None:
    """The proxy HTTPS_PROXY / HTTP_PROXY / NO_PROXY give for `base`, read once as httpx reads them."""
    url = urllib.parse.urlsplit(base)
    if url.hostname and urllib.request.proxy_bypass(url.hostname):
        return None
    return urllib.request.getproxies().get(url.scheme)
