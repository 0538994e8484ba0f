"""The cron endpoint's authentication, and the sweep recovering work a dead worker left behind."""

from __future__ import annotations

import signal
import time

import httpx
import pytest

from tests.conftest import CRON_SECRET, WebServer
from tests.test_reply import deliver, job_with_status, outbound
from waypost.devtools.fake_graph import Behaviour, FakeGraph

CRON = "/api/cron/run-outbound-jobs"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cron_auth_matrix(client: httpx.Client, method: str) -> None:
    def call(headers: dict | None = None, params: dict | None = None) -> httpx.Response:
        return client.request(method, CRON, headers=headers, params=params)

    assert call().status_code == 401
    assert call(headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert call(params={"token": "wrong"}).status_code == 401
    assert call(headers={"Authorization": f"Basic {CRON_SECRET}"}).status_code == 401
    # headers a platform's scheduler might add grant nothing by themselves
    for header in ({"x-vercel-cron": "1"}, {"X-Forwarded-For": "127.0.0.1"}, {"X-Cron-Secret": CRON_SECRET}):
        assert call(headers=header).status_code == 401, header

    bearer = call(headers={"Authorization": f"Bearer {CRON_SECRET}"})
    assert bearer.status_code == 200
    body = bearer.json()
    assert body["ok"] is True and body["message"] == "Job runner triggered" and body["authMethod"] == "bearer"
    assert body["elapsed"].endswith("ms") and "outbound_jobs_redeferred" in body
    query = call(params={"token": CRON_SECRET})
    assert query.status_code == 200 and query.json()["authMethod"] == "query"
    assert CRON_SECRET not in bearer.text + query.text


def test_cron_without_a_secret_is_closed(settings) -> None:
    with WebServer(settings.model_copy(update={"cron_secret": None})) as web, httpx.Client(base_url=web.url) as http:
        for auth in ({}, {"Authorization": "Bearer x"}, {"Authorization": "Bearer None"}):
            response = http.get(CRON, headers=auth)
            assert response.status_code == 503 and response.json()["code"] == "CRON_DISABLED"


def sweep(client: httpx.Client) -> dict:
    response = client.post(CRON, headers={"Authorization": f"Bearer {CRON_SECRET}"})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_worker_killed_mid_job_has_its_job_finished_by_another_after_the_sweep(
    client, db, fake_graph: FakeGraph, start_worker
) -> None:
    # The first send hangs without being accepted; its worker dies during it.
    fake_graph.script.append(Behaviour(status=503, hang=3, accept=False))
    tight = {
        "WAYPOST_SEND_READ_TIMEOUT": "30",
        "WAYPOST_UNKNOWN_GRACE_SECONDS": "1",
        "WAYPOST_STALLED_WORKER_SECONDS": "1",
    }
    doomed = start_worker(**tight)
    deliver(client, "hello")
    deadline = time.monotonic() + 10
    while not fake_graph.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_graph.requests, doomed.output()
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait()

    start_worker(**tight)
    # The dead worker's attempt counts as in flight until its timeouts (1 + 30 + 5 s) have passed:
    # only then may it be presumed dead. Shorten that by ageing its claim instead of waiting.
    db.execute("UPDATE messages SET sending_since = sending_since - interval '1 minute' WHERE direction = 'outbound'")
    db.execute(
        "UPDATE procrastinate_workers SET last_heartbeat = last_heartbeat - interval '1 minute' "
        "WHERE id = (SELECT worker_id FROM procrastinate_jobs WHERE status = 'doing' LIMIT 1)"
    )
    reports = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        reports.append(sweep(client))
        if db.execute("SELECT 1 FROM outbound_jobs WHERE status = 'done'").fetchone():
            break
        time.sleep(0.5)
    job_with_status(db, "done")
    assert sum(r["stalled_jobs_retried"] for r in reports) >= 1, reports
    assert [r.accepted for r in fake_graph.requests] == [False, True]
    [reply] = outbound(db)
    assert reply["status"] == "sent" and reply["send_attempts"] == 2


def test_sweep_re_defers_an_orphaned_job_and_gives_up_when_attempts_are_spent(
    client, db, fake_graph: FakeGraph, start_worker, settings
) -> None:
    deliver(client, "hello", wa_id="100")
    deliver(client, "hello", wa_id="200")
    # Both lose their queue rows (as after a restore or a manual cleanup); one is out of attempts.
    db.execute("DELETE FROM procrastinate_jobs")
    db.execute("UPDATE outbound_jobs SET updated_at = now() - interval '1 minute'")
    db.execute(
        "UPDATE outbound_jobs SET attempts = %s WHERE conversation_id = "
        "(SELECT id FROM conversations WHERE wa_id = '200')",
        [settings.reply_max_attempts],
    )
    report = sweep(client)
    assert (report["outbound_jobs_redeferred"], report["outbound_jobs_failed"]) == (1, 1)
    assert sweep(client)["outbound_jobs_redeferred"] == 0  # idempotent: the job is queued now
    start_worker()
    jobs = job_with_status(db, "done")
    assert sorted(j["status"] for j in jobs) == ["done", "failed"]
    assert db.execute("SELECT kind FROM notifications").fetchone()["kind"] == "reply_failed"
    assert len(fake_graph.requests) == 1


def test_sweep_deletes_rows_past_retention(client, db) -> None:
    deliver(client, "old")
    db.execute("UPDATE webhook_events SET received_at = now() - interval '31 days'")
    report = sweep(client)
    assert report["webhook_events_deleted"] == 1
    assert db.execute("SELECT count(*) AS n FROM webhook_events").fetchone()["n"] == 0


def test_the_sweep_leaves_the_jobs_of_a_live_worker_alone(settings, db, fake_graph: FakeGraph, start_worker) -> None:
    """A job that runs longer than WAYPOST_STALLED_WORKER_SECONDS under a worker that is alive is not
    stalled. With procrastinate's 10 s heartbeat and a 2 s threshold the sweep once took it back
    mid-run; the worker then could not record the job's end and retried that for ever."""
    fake_graph.script.append(Behaviour(hang=3.0))  # a slow send, longer than the threshold
    short = settings.model_copy(update={"stalled_worker_seconds": 2.0, "send_read_timeout": 10.0})
    start_worker(WAYPOST_STALLED_WORKER_SECONDS="2", WAYPOST_SEND_READ_TIMEOUT="10")
    with WebServer(short) as web, httpx.Client(base_url=web.url) as client:
        deliver(client, "take your time")
        reports, running_for = [], []
        while not db.execute("SELECT 1 FROM outbound_jobs WHERE status = 'done'").fetchone():
            age = db.execute(
                "SELECT extract(epoch FROM now() - started_at)::float8 AS s FROM outbound_jobs WHERE status = 'running'"
            ).fetchone()
            reports.append(sweep(client))
            running_for.append(age["s"] if age else 0.0)
            assert len(reports) < 100, "the job never finished"
            time.sleep(0.2)
    assert sum(r["stalled_jobs_retried"] for r in reports) == 0, reports
    # the sweep ran while the job had run past the threshold (however many sweeps a busy machine made)
    assert max(running_for) > 2.0, running_for
    assert len(fake_graph.requests) == 1 and outbound(db)[0]["status"] == "sent"
