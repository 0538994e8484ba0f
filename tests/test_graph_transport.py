"""The reply's two Graph API calls over a real socket: a failure is classified by when it happened.

Exactly-once rests on this: "never left" may be sent again, anything after the request may have gone
out is "ambiguous" and is never resent at once (worker.graph, worker.graph_post)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from waypost.devtools.fake_graph import error_body
from waypost.settings import Settings
from worker.graph import GraphClient, SendFailed

Reply = Callable[[asyncio.StreamWriter], Awaitable[None]]  # what the server does once it has read a request


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head, await reader.readexactly(length)


def answer(writer: asyncio.StreamWriter, status: int, body: bytes, extra: bytes = b"") -> None:
    writer.write(
        b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
        % (status, len(body), extra, body)
    )


async def send_text(graph: GraphClient) -> str:
    return await graph.send_message(
        phone_number_id="111",
        wa_id="15550001",
        user_id=None,
        kind="text",
        content={"body": "héllo"},
        context_message_id=None,
        callback_data="key-1",
    )


async def send_through(settings: Settings, reply: Reply | None, *, read: bool = False) -> tuple[Any, list[bytes]]:
    """Send one text (or, with `read`, one read receipt) to a server on 127.0.0.1 that reads each request
    whole, keeps it, then does `reply` (None: nothing listens); the outcome (the wamid, or the
    SendFailed) and the requests the server received."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert reply is not None
        head, body = await read_request(reader)
        received.append(head + body)
        await reply(writer)

    server = None
    if reply is None:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    else:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    graph = GraphClient(
        settings.model_copy(update={"whatsapp_api_base": f"http://127.0.0.1:{port}", "send_read_timeout": 0.3})
    )
    outcome: Any = None
    try:
        if read:
            await graph.mark_read(phone_number_id="111", message_id="wamid.IN", typing=True)
        else:
            outcome = await send_text(graph)
    except SendFailed as failure:
        outcome = failure
    finally:
        await graph.aclose()
        if server is not None:
            server.close()
    return outcome, received


def run(settings: Settings, reply: Reply | None, **kw: Any) -> tuple[Any, list[bytes]]:
    return asyncio.run(send_through(settings, reply, **kw))


def test_an_accepted_send_returns_the_wamid_and_the_token_and_compact_json_went_with_it(settings: Settings) -> None:
    async def ok(writer: asyncio.StreamWriter) -> None:
        answer(writer, 200, json.dumps({"messages": [{"id": "wamid.OUT"}]}).encode())

    wamid, [request] = run(settings, ok)
    assert wamid == "wamid.OUT"
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /") and b"/111/messages HTTP/1.1" in head
    assert settings.whatsapp_access_token is not None
    assert f"Authorization: Bearer {settings.whatsapp_access_token.get_secret_value()}".encode() in head
    assert json.loads(body)["text"] == {"body": "héllo"} and b", " not in body and "héllo".encode() in body


def test_nothing_listening_is_not_sent_and_may_be_retried(settings: Settings) -> None:
    failure, _ = run(settings, None)
    assert isinstance(failure, SendFailed) and failure.kind == "retryable" and str(failure).startswith("not sent")


@pytest.mark.parametrize("read", [False, True])
def test_a_connection_cut_after_the_request_is_ambiguous(settings: Settings, read: bool) -> None:
    async def cut(writer: asyncio.StreamWriter) -> None:
        writer.close()

    failure, requests = run(settings, cut, read=read)
    assert len(requests) == 1  # it did arrive: a resend could be a second message
    assert isinstance(failure, SendFailed) and failure.kind == "ambiguous", failure


def test_an_answer_that_never_comes_is_ambiguous(settings: Settings) -> None:
    async def hang(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    failure, requests = run(settings, hang)
    assert len(requests) == 1
    assert isinstance(failure, SendFailed) and failure.kind == "ambiguous" and "outcome unknown" in str(failure)


def test_a_success_without_a_message_id_is_ambiguous_and_an_error_is_classified(settings: Settings) -> None:
    async def garbled(writer: asyncio.StreamWriter) -> None:
        answer(writer, 200, b"<html>")

    failure, _ = run(settings, garbled)
    assert isinstance(failure, SendFailed) and failure.kind == "ambiguous" and "without a message id" in str(failure)

    async def refused(writer: asyncio.StreamWriter) -> None:
        answer(writer, 400, json.dumps(error_body(131047)).encode())

    for read in (False, True):
        failure, _ = run(settings, refused, read=read)
        assert isinstance(failure, SendFailed) and (failure.kind, failure.code) == ("permanent", 131047)


def test_the_proxy_variables_are_honoured_as_httpx_honours_them(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def through_proxy() -> bytes:
        seen: list[bytes] = []

        async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head, _ = await read_request(reader)
            seen.append(head)
            answer(writer, 200, json.dumps({"messages": [{"id": "wamid.P"}]}).encode())

        server = await asyncio.start_server(proxy, "127.0.0.1", 0)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        monkeypatch.setenv("NO_PROXY", "")
        graph = GraphClient(settings.model_copy(update={"whatsapp_api_base": "http://graph.invalid"}))
        try:
            sent = await send_text(graph)
        finally:
            await graph.aclose()
            server.close()
        assert sent == "wamid.P"
        return seen[0]

    # the proxy is asked for the Graph API's URL: a host this machine cannot even resolve
    assert asyncio.run(through_proxy()).startswith(b"POST http://graph.invalid/")

    async def ok(writer: asyncio.StreamWriter) -> None:
        answer(writer, 200, json.dumps({"messages": [{"id": "wamid.D"}]}).encode())

    # the proxy above is gone: only a host NO_PROXY names is reached, straight
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert run(settings, ok)[0] == "wamid.D"
    monkeypatch.setenv("NO_PROXY", "")
    failure, _ = run(settings, ok)
    assert isinstance(failure, SendFailed) and failure.kind == "retryable"  # the dead proxy: never left


def test_a_redirect_is_not_followed_so_the_token_stays_where_it_was_sent(settings: Settings) -> None:
    async def elsewhere(writer: asyncio.StreamWriter) -> None:
        answer(writer, 307, b"{}", b"location: /v23.0/222/messages\r\n")

    failure, requests = run(settings, elsewhere)
    assert len(requests) == 1  # not sent again, with its Authorization header, where the 307 points
    assert isinstance(failure, SendFailed) and failure.kind == "permanent" and "HTTP 307" in str(failure)


def test_a_cookie_meta_sets_is_neither_kept_nor_sent_back(settings: Settings) -> None:
    received: list[bytes] = []

    async def scenario() -> None:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while not reader.at_eof():  # both requests, on one kept-alive connection or two
                try:
                    head, _ = await read_request(reader)
                except asyncio.IncompleteReadError:
                    return
                received.append(head)
                body = json.dumps({"messages": [{"id": "wamid.OUT"}], "success": True}).encode()
                answer(writer, 200, body, b"set-cookie: tracking=abc; Path=/\r\n")

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # a host name: a cookie jar refuses every cookie from an IP address anyway
        graph = GraphClient(settings.model_copy(update={"whatsapp_api_base": f"http://localhost:{port}"}))
        try:
            assert await send_text(graph) == "wamid.OUT"
            await graph.mark_read(phone_number_id="111", message_id="wamid.IN", typing=False)
        finally:
            await graph.aclose()
            server.close()

    asyncio.run(scenario())
    assert len(received) == 2
    assert all(b"\r\ncookie:" not in head.lower() for head in received)
