"""Local HTTP plumbing shared by `waypost dev`, the tests and the benchmarks: a free port, and
waiting for a server to answer."""

from __future__ import annotations

import socket

import httpx

from waypost.devtools.processes import poll


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str) -> bool:
    """Whether `url` answers 200 within a second (False while nothing listens yet)."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until_ready(url: str, timeout: float = 30) -> None:
    """Poll a web process's /readyz until it answers 200 (it may not be listening yet)."""
    poll(lambda: answers(url + "/readyz"), timeout=timeout, what=f"{url} not ready in {timeout}s")
