"""The fake Graph API validates like Meta and hands out wamids that stay unique across restarts."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from tests.conftest import ServerThread
from waypost.devtools.fake_graph import FakeGraph
from waypost.devtools.processes import poll

SEND = "/v25.0/100000000000001/messages"


def test_sends_are_validated_like_meta_and_answered_with_unique_wamids() -> None:
    ids = set()
    for _ in range(2):  # two "restarts"
        fake = FakeGraph(access_token="t")
        with ServerThread(fake.app) as server, httpx.Client(base_url=server.url) as http:
            auth = {"Authorization": "Bearer t"}
            assert http.post(SEND, json={}).json()["error"]["code"] == 190
            bad = http.post(
                SEND,
                headers=auth,
                json={"messaging_product": "whatsapp", "to": "1", "type": "text", "text": {"body": "x" * 4097}},
            )
            assert bad.status_code == 400 and "4096" in bad.json()["error"]["message"]
            ok = http.post(
                SEND,
                headers=auth,
                json={"messaging_product": "whatsapp", "to": "+1555", "type": "text", "text": {"body": "hi"}},
            ).json()
            assert ok["contacts"] == [{"input": "+1555", "wa_id": "1555"}]
            by_bsuid = http.post(
                SEND,
                headers=auth,
                json={"messaging_product": "whatsapp", "recipient": "US.1", "type": "text", "text": {"body": "hi"}},
            ).json()
            assert by_bsuid["contacts"] == [{"input": "US.1", "user_id": "US.1"}]
            ids |= {ok["messages"][0]["id"], by_bsuid["messages"][0]["id"]}
        assert [r.accepted for r in fake.requests] == [False, True, True]
    assert len(ids) == 4


def test_the_log_of_sends_reads_from_an_offset_over_the_benchmarks_client() -> None:
    """A load driver polls only what is new (?from=N), through bench/http.py's keep-alive client."""
    import asyncio

    from bench.http import Client

    fake = FakeGraph(access_token="t")
    body = b'{"messaging_product": "whatsapp", "to": "1555", "type": "text", "text": {"body": "hi"}}'
    headers = {"Authorization": "Bearer t", "Content-Type": "application/json"}

    async def drive(url: str) -> tuple[list[int], list[dict], list[dict], int]:
        async with Client(url, max_connections=2) as client:
            statuses = [await client.post(SEND, body, headers) for _ in range(3)]
            everything = await client.get_json("/_fake/requests")
            after_two = await client.get_json("/_fake/requests?from=2")
            refused, _ = await client.request("GET", "/_fake/requests?from=x")
            return statuses, everything, after_two, refused

    with ServerThread(fake.app) as server:
        statuses, everything, after_two, refused = asyncio.run(drive(server.url))
    assert statuses == [200, 200, 200]
    assert [r["wa_message_id"] for r in everything] == [r.wa_message_id for r in fake.requests]
    assert after_two == everything[2:] and len(everything) == 3
    assert refused == 400


def test_a_status_the_web_process_cannot_take_is_one_warning_not_a_task_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the web process is away
        probe.bind(("127.0.0.1", 0))
        away = f"http://127.0.0.1:{probe.getsockname()[1]}/api/webhooks/whatsapp"
    fake = FakeGraph(access_token="t", app_secret="s", webhook_url=away, auto_statuses=("sent", "delivered"))
    caplog.set_level(logging.WARNING)
    with ServerThread(fake.app) as server, httpx.Client(base_url=server.url) as http:
        sent = http.post(
            SEND,
            headers={"Authorization": "Bearer t"},
            json={"messaging_product": "whatsapp", "to": "1555", "type": "text", "text": {"body": "hi"}},
        ).json()
        wamid = sent["messages"][0]["id"]

        def said() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "waypost.devtools.fake_graph"]

        poll(said, timeout=10, what="the fake said nothing of the status it could not deliver")
    lines = said()
    assert [r.getMessage().split(":")[0] for r in lines] == ["fake Graph API"]
    assert f"sent status of {wamid} not delivered" in lines[0].getMessage()
    assert not [r for r in caplog.records if r.name == "asyncio"]  # no "Task exception was never retrieved"
