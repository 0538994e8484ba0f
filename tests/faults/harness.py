"""What every fault scenario shares: a stack with short timeouts, a driver that posts like Meta
(redelivering until it gets a 200), settling with the sweep, and the invariants checked at the end."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import time
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.conftest import APP_SECRET, CRON_SECRET
from waypost.devtools import payloads
from waypost.devtools.fake_graph import FakeGraph
from waypost.settings import Settings

# Short enough for a scenario to converge in seconds: a send in flight is presumed dead after
# 0.5 + 1 + 5 s, an unknown one is resent 1 s later, a silent worker is stalled after 2 s; and
# generous budgets, so that no message gives up under a 30% error rate.
FAULT_SETTINGS: dict[str, Any] = {
    "send_connect_timeout": 0.5,
    "send_read_timeout": 1.0,
    "unknown_grace_seconds": 1.0,
    "stalled_worker_seconds": 2.0,
    "retry_base_seconds": 0.1,
    "reply_max_attempts": 30,
    "reply_max_retry_seconds": 600.0,
    "worker_poll_interval": 0.5,
    # Bursts (README "Turns"): a conversation's messages 1 s or less apart share one reply, at most
    # 2.5 s after the first; the driver's rates make turns of one to several messages.
    "turn_quiet_seconds": 1.0,
    "turn_max_wait_seconds": 2.5,
}
SEND_TASKS = ("send_reply", "send_operator_message")


def fault_settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(update={**FAULT_SETTINGS, **overrides})


def sender(i: int, conversations: int) -> str:
    return f"4930{i % conversations:07d}"


@dataclasses.dataclass
class Driver:
    """Posts signed inbound messages to one or more web processes, as Meta does: a POST that gets
    no 200 is delivered again, until it does."""

    urls: list[str]
    conversations: int = 10
    answered: int = 0  # POSTs that got an HTTP answer: each must be in the journal, 200 or not
    ok: int = 0
    wamids: list[str] = dataclasses.field(default_factory=list)

    def deliver(self, body: bytes, first_url: int = 0, *, counted: bool = True) -> None:
        """Deliver until accepted; `counted` deliveries are the inbound ones the journal check counts."""
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(APP_SECRET, body)}
        deadline = time.monotonic() + 60
        attempt = first_url
        while time.monotonic() < deadline:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                status = httpx.post(
                    url + "/api/webhooks/whatsapp", content=body, headers=headers, timeout=10
                ).status_code
            except httpx.TransportError:
                time.sleep(0.2)  # the server is away: Meta retries later
                continue
            self.answered += counted
            if status == 200:
                self.ok += counted
                return
            time.sleep(0.2)
        raise AssertionError("a webhook was never accepted")

    def message(self, i: int) -> dict[str, Any]:
        message = payloads.text_message(f"fault scenario message {i}", wa_id=sender(i, self.conversations))
        self.wamids.append(message["id"])
        return message

    def run(self, count: int, rate: float, *, duplicates: bool = False) -> None:
        """`count` messages at `rate` per second (open loop), each from one of the conversations;
        with `duplicates`, each is delivered twice, to different web processes, at once."""
        bodies = [payloads.dumps(payloads.inbound(self.message(i))) for i in range(count)]
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = []
            for i, body in enumerate(bodies):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(pool.submit(self.deliver, body, i))
                if duplicates:
                    futures.append(pool.submit(self.deliver, body, i + 1))
            for future in futures:
                future.result()


def open_work(conn: psycopg.Connection) -> dict[str, int]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM outbound_jobs WHERE status IN ('gathering', 'pending', 'running')) AS jobs,"
        " (SELECT count(*) FROM messages WHERE status IN ('sending', 'unknown')) AS sends,"
        " (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        "   AND task_name = ANY(%s)) AS queued",
        [list(SEND_TASKS)],
    ).fetchone()
    assert row is not None
    return dict(row)


def settle(database_url: str, web_url: str, timeout: float = 60) -> float:
    """Run the sweep every second until no work is open; returns how long that took. Open work is
    looked at every 50 ms: settling is seen when it happens, not at the next sweep."""
    started = time.monotonic()
    swept = -1.0
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        while True:
            left = open_work(conn)
            if not any(left.values()):
                return time.monotonic() - started
            assert time.monotonic() - started < timeout, f"work still open after {timeout}s: {left}"
            if time.monotonic() - swept >= 1.0:
                sweep_now(web_url)
                swept = time.monotonic()
            time.sleep(0.05)


def sweep_now(web_url: str) -> None:
    """Run the sweep through the cron endpoint, as a scheduler would."""
    with contextlib.suppress(httpx.TransportError):  # a web process restarting
        httpx.post(
            web_url + "/api/cron/run-outbound-jobs", headers={"Authorization": f"Bearer {CRON_SECRET}"}, timeout=10
        )


def check_invariants(
    database_url: str, fake: FakeGraph, driver: Driver, *, database_was_down: bool = False
) -> dict[str, Any]:
    """Every inbound message stored and in exactly one turn; exactly one accepted send per turn (one
    per message without a quiet window), every outbound row matching one; no open job; every
    answered POST journaled (while the database is down a POST cannot be: it gets a 5xx and is
    delivered again)."""
    accepted = fake.accepted()
    per_key = collections.Counter(r.body.get("biz_opaque_callback_data") for r in accepted)
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT m.wa_message_id, m.turn_id, f.wa_message_id AS first"
            "  FROM messages m LEFT JOIN outbound_jobs j ON j.id = m.turn_id"
            "  LEFT JOIN messages f ON f.id = j.inbound_message_id"
            " WHERE m.direction = 'inbound'"
        ).fetchall()
        inbound = {r["wa_message_id"] for r in rows}
        turns = {r["first"] for r in rows}
        outbound = conn.execute(
            "SELECT idempotency_key, status, wa_message_id FROM messages WHERE direction = 'outbound'"
        ).fetchall()
        jobs = collections.Counter(r["status"] for r in conn.execute("SELECT status FROM outbound_jobs").fetchall())
        # inbound deliveries only: the fake Graph API's status webhooks are journaled too
        journaled = conn.execute(
            "SELECT count(*) AS n FROM webhook_events WHERE position('\"statuses\"' in convert_from(body, 'UTF8')) = 0"
        ).fetchone()["n"]  # type: ignore[index]
        left = open_work(conn)
    expected = set(driver.wamids)
    assert expected <= inbound, f"{len(expected - inbound)} inbound message(s) lost"
    assert None not in turns, "an inbound message in no turn"
    assert jobs == {"done": len(turns)}, jobs
    assert set(per_key) == {f"reply:{w}" for w in turns}, "a send for an unknown key, or a missing one"
    doubles = {key: n for key, n in per_key.items() if n != 1}
    assert not doubles, f"sent more than once: {doubles}"
    accepted_ids = {r.wa_message_id for r in accepted}
    assert len(outbound) == len(turns)
    for row in outbound:
        assert row["status"] in ("sent", "delivered", "read"), row
        assert row["wa_message_id"] in accepted_ids, row
    assert not any(left.values()), left
    if database_was_down:
        assert journaled >= driver.ok, (journaled, driver.ok)
    else:
        assert journaled == driver.answered, (journaled, driver.answered)
    return {
        "messages": len(expected),
        "turns": len(turns),
        "posts answered": driver.answered,
        "graph requests": len(fake.requests),
        "accepted sends": len(accepted),
        "journal rows": journaled,
    }
