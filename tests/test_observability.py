"""Metrics after a real end-to-end message, the JSON log format, and `waypost status` exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from tests import payloads
from tests.conftest import (
    APP_SECRET,
    WebServer,
    WorkerProcess,
    post_webhook,
    run_waypost,
    wait_for,
    waypost_env,
)
from tests.net import free_port, wait_until_ready
from waypost.settings import Settings

METRICS_TOKEN = "test-metrics-token"


@pytest.fixture
def observed(settings: Settings) -> Settings:
    return settings.model_copy(update={"metrics_token": SecretStr(METRICS_TOKEN), "worker_metrics_port": free_port()})


def scrape(url: str, token: str | None = METRICS_TOKEN) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(url, headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    samples = {}
    for line in answer.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def moved(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def test_metrics_move_with_an_end_to_end_message(observed: Settings, db: psycopg.Connection, tmp_path: Path) -> None:
    worker = WorkerProcess(observed, tmp_path / "worker.log")
    worker.wait_ready()
    worker_url = f"http://127.0.0.1:{observed.worker_metrics_port}/metrics"
    try:
        with WebServer(observed) as web, httpx.Client(base_url=web.url) as client:
            web_before, worker_before = scrape(web.url + "/metrics"), scrape(worker_url, None)
            message = payloads.text_message("What are your opening hours?")
            body = payloads.dumps(payloads.inbound(message))
            assert post_webhook(client, body).status_code == 200
            wait_for(db, "SELECT 1 FROM outbound_jobs WHERE status = 'done'")
            assert post_webhook(client, body).status_code == 200  # redelivered: a duplicate
            assert post_webhook(client, body, secret="wrong").status_code == 403
            assert post_webhook(client, b"{not json").status_code == 400
            web_after = scrape(web.url + "/metrics")
            time.sleep(0.2)
            worker_after = scrape(worker_url, None)
    finally:
        worker.stop()
    for outcome in ("ok", "duplicate", "bad_signature", "bad_payload"):
        assert moved(web_before, web_after, f'waypost_webhook_requests_total{{outcome="{outcome}"}}') == 1, outcome
    assert moved(web_before, web_after, "waypost_webhook_seconds_count") == 4
    assert moved(web_before, web_after, "waypost_inbound_messages_total") == 1
    assert web_after["waypost_database_up"] == 1 and web_after["waypost_workers"] == 1
    assert web_after['waypost_open_reply_jobs{status="pending"}'] == 0
    assert moved(worker_before, worker_after, 'waypost_sends_total{code="",result="sent"}') == 1
    assert moved(worker_before, worker_after, 'waypost_reply_jobs_total{state="done"}') == 1
    assert moved(worker_before, worker_after, "waypost_reply_seconds_count") == 1
    assert moved(worker_before, worker_after, 'waypost_orchestrator_seconds_count{provider="rules"}') == 1
    heartbeat = [v for k, v in worker_after.items() if k.startswith("waypost_worker_heartbeat_age_seconds")]
    assert heartbeat and 0 <= heartbeat[0] < 30


def test_metrics_are_closed_without_the_token(observed: Settings) -> None:
    with WebServer(observed) as web:
        assert httpx.get(web.url + "/metrics").status_code == 401
        wrong = httpx.get(web.url + "/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
    with WebServer(observed.model_copy(update={"metrics_token": None})) as web:
        assert httpx.get(web.url + "/metrics").json()["code"] == "METRICS_OFF"


def test_metrics_add_up_across_uvicorn_workers(observed: Settings, tmp_path: Path) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = free_port()
    env = waypost_env(observed, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "webhook.app:app", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=30)
        for i in range(12):  # a new connection each time: both processes answer some
            body = payloads.dumps(payloads.inbound(payloads.text_message(f"m{i}", wa_id=f"1555000{i:04d}")))
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": payloads.sign(APP_SECRET, body)}
            assert httpx.post(url + "/api/webhooks/whatsapp", content=body, headers=headers).status_code == 200
        samples = scrape(url + "/metrics")
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert samples['waypost_webhook_requests_total{outcome="ok"}'] == 12
    assert samples["waypost_inbound_messages_total"] == 12
    assert len(list(multiproc.glob("counter_*.db"))) == 2  # two processes wrote their share


def test_json_logs_carry_the_ids_and_no_secrets(observed: Settings, db: psycopg.Connection, tmp_path: Path) -> None:
    worker = WorkerProcess(observed, tmp_path / "worker.log", WAYPOST_LOG_FORMAT="json")
    port = free_port()
    log = (tmp_path / "web.log").open("w")
    web = subprocess.Popen(
        [sys.executable, "-m", "waypost.cli", "serve", "--port", str(port)],
        env=waypost_env(observed, WAYPOST_LOG_FORMAT="json"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        worker.wait_ready()
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, timeout=20)
        body = payloads.dumps(payloads.inbound(payloads.text_message("secret recipe please")))
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": payloads.sign(APP_SECRET, body),
            "X-Request-ID": "trace-me-123",
        }
        assert httpx.post(url + "/api/webhooks/whatsapp", content=body, headers=headers).status_code == 200
        wait_for(db, "SELECT 1 FROM outbound_jobs WHERE status = 'done'")
        time.sleep(0.3)
    finally:
        web.terminate()
        web.wait(timeout=15)
        log.close()
        worker.stop()
    web_lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines() if line.startswith("{")]
    worker_lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    assert web_lines and worker_lines
    for line in web_lines + worker_lines:
        assert {"ts", "level", "logger", "message", "request_id", "job_id"} <= set(line)
    traced = [line for line in web_lines + worker_lines if line["request_id"] == "trace-me-123"]
    loggers = {line["logger"] for line in traced}
    assert {"webhook.endpoints", "uvicorn.access", "worker.reply"} <= loggers, loggers
    done = [line for line in traced if line["message"].startswith("job done")]
    assert done and done[0]["job_id"] != "-"
    everything = (tmp_path / "web.log").read_text() + worker.output()
    for secret in observed.secret_values():
        assert secret not in everything
    assert "secret recipe please" not in everything  # message bodies stay out of the logs


def test_status_exit_codes(observed: Settings, db: psycopg.Connection, tmp_path: Path) -> None:
    # broken: no worker at all
    lonely = run_waypost(observed, "status")
    assert lonely.returncode == 1 and "no live worker" in lonely.stdout
    worker = WorkerProcess(observed, tmp_path / "worker.log")
    worker.wait_ready()
    try:
        with WebServer(observed) as web, httpx.Client(base_url=web.url) as client:
            assert (
                post_webhook(client, payloads.dumps(payloads.inbound(payloads.text_message("hi")))).status_code == 200
            )
            wait_for(db, "SELECT 1 FROM outbound_jobs WHERE status = 'done'")
        healthy = run_waypost(observed, "status")
        assert healthy.returncode == 0, healthy.stdout
        assert "attention: nothing" in healthy.stdout
        print("\n" + healthy.stdout)
        report = json.loads(run_waypost(observed, "status", "--json").stdout)
        assert report["reply_jobs"]["done"]["jobs"] == 1 and report["attention"] == []
        assert report["schema"]["ok"] and len(report["workers"]) == 1
        # broken: a reply job stuck for 10 minutes
        db.execute("INSERT INTO notifications (kind, body) VALUES ('send_failed', 'x')")
        db.execute("UPDATE outbound_jobs SET status = 'pending', created_at = now() - interval '10 minutes'")
        stuck = run_waypost(observed, "status")
        assert stuck.returncode == 1 and "reply job(s) pending, the oldest for 600s" in stuck.stdout
        assert "notifications: 1 unread" in stuck.stdout
        # broken: schema drift
        db.execute("ALTER TABLE messages DROP COLUMN contact_sent_at")
        drifted = run_waypost(observed, "status", "--json")
        assert drifted.returncode == 1
        assert any("schema mismatch" in reason for reason in json.loads(drifted.stdout)["attention"])
    finally:
        worker.stop()


def test_secrets_are_redacted_from_any_log_line() -> None:
    import logging

    from waypost.logs import JsonFormatter, RedactingFormatter

    record = logging.makeLogRecord({"msg": "token=%s and again %s", "args": ("s3cr3t-value", "s3cr3t-value")})
    record.request_id, record.job_id = "-", "-"
    assert RedactingFormatter(["s3cr3t-value"], "%(message)s").format(record) == "token=[REDACTED] and again [REDACTED]"
    assert "s3cr3t-value" not in JsonFormatter(["s3cr3t-value"]).format(record)
    assert re.search(r'"message": "token=\[REDACTED\]', JsonFormatter(["s3cr3t-value"]).format(record))
