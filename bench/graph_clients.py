"""CPU per Graph API send: httpx (the other Graph calls) against worker.graph_post (the send and the
read receipt), under uvloop as in `waypost worker`, sequential POSTs to a minimal HTTP server in a
process of its own (so its CPU is not counted).

    .venv/bin/python -m bench.graph_clients [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
from collections.abc import Awaitable, Callable

import httpx
import uvloop

from waypost.devtools.net import free_port
from worker.graph_post import JsonPoster

ANSWER = json.dumps({"messaging_product": "whatsapp", "messages": [{"id": "wamid.X"}]}).encode()
SEND = {"messaging_product": "whatsapp", "to": "15550001", "type": "text", "text": {"body": "hello"}}
PATH = "/v23.0/111/messages"


async def _serve(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # the client closed its connection
                return
            length = next(int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(ANSWER)
            )
            writer.write(ANSWER)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    await server.serve_forever()


def _server(port: int) -> None:
    uvloop.run(_serve(port))


async def _cpu_per_request(post: Callable[[], Awaitable[object]], requests: int) -> float:
    for _ in range(100):  # connections open, code warm
        await post()
    started = time.process_time()
    for _ in range(requests):
        await post()
    return (time.process_time() - started) / requests * 1e6


async def _httpx(base: str, requests: int) -> float:
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": "Bearer x"}) as client:

        async def post() -> object:
            response = await client.post(PATH, json=SEND)
            return response.json()

        return await _cpu_per_request(post, requests)


async def _graph_post(base: str, requests: int) -> float:
    poster = JsonPoster(base, "x", connect_timeout=5, read_timeout=20)
    try:

        async def post() -> object:
            return (await poster.post(PATH, SEND)).json()

        return await _cpu_per_request(post, requests)
    finally:
        await poster.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    port = free_port()
    server = multiprocessing.Process(target=_server, args=(port,), daemon=True)
    server.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.post(base + PATH, json=SEND).raise_for_status()
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    try:
        figures = {
            "httpx": uvloop.run(_httpx(base, args.requests)),
            "worker.graph_post (aiohttp)": uvloop.run(_graph_post(base, args.requests)),
        }
    finally:
        server.terminate()
    for name, micros in figures.items():
        print(f"{name:28} {micros:6.0f} µs of CPU per POST ({args.requests} sequential, uvloop)")
    print(f"ratio graph_post / httpx: {figures['worker.graph_post (aiohttp)'] / figures['httpx']:.2f}")


if __name__ == "__main__":
    main()
