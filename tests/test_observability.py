"""Metrics after a real end-to-end message, the JSON log format, and `waypost status` exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from tests.conftest import (
    APP_SECRET,
    WebServer,
    WorkerProcess,
    post_webhook,
    run_waypost,
    wait_for,
    wait_until,
    waypost_env,
)
from waypost.devtools import payloads
from waypost.devtools.net import free_port, wait_until_ready
from waypost.settings import Settings
from worker.queue import MAINTENANCE_QUEUE, REPLY_QUEUE

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


@pytest.mark.usefixtures("fake_graph")  # its worker sends
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
            # the worker counts a job once it has recorded it: wait for the count, not for a while
            done = 'waypost_reply_jobs_total{state="done"}'
            worker_after = wait_until(lambda: moved(worker_before, (now := scrape(worker_url, None)), done) and now)
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


def test_metrics_add_up_across_web_processes(observed: Settings, tmp_path: Path) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    port = free_port()
    env = waypost_env(observed, PROMETHEUS_MULTIPROC_DIR=str(multiproc))
    server = subprocess.Popen(
        [sys.executable, "-m", "waypost.cli", "serve", "--port", str(port), "--workers", "2"],
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


@pytest.mark.usefixtures("fake_graph")  # its worker sends
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
        # procrastinate's line about the job's end comes after the reply's read call (the job itself
        # ended with the send's record): stopped earlier, the worker says it waits for a running job
        wait_until(
            lambda: any("send_reply[" in line and "ended with status" in line for line in worker.output().splitlines()),
            what="the reply job's last line",
        )
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
    # procrastinate's own lines about the job carry both ids too (they used to say "-")
    job_id = done[0]["job_id"]
    about_the_job = [
        line
        for line in web_lines + worker_lines
        if (line["logger"].startswith("procrastinate") and f"[{job_id}]" in line["message"])
        or line["message"].startswith("Deferred 1 job")
    ]
    messages = [line["message"] for line in about_the_job]
    assert any(m.startswith("Starting job send_reply") for m in messages), messages
    assert any("ended with status: Success" in m for m in messages), messages
    assert any(m.startswith("Deferred 1 job") for m in messages), messages
    for line in about_the_job:
        assert (line["request_id"], line["job_id"]) == ("trace-me-123", job_id), line
    everything = (tmp_path / "web.log").read_text() + worker.output()
    for secret in observed.secret_values():
        assert secret not in everything
    assert "secret recipe please" not in everything  # message bodies stay out of the logs


def test_secrets_and_searches_stay_out_of_the_access_log(settings: Settings, tmp_path: Path) -> None:
    """A cron secret sent URL-encoded as ?token= was logged as token=Cr0n%2BSecret%2FValue%3Dsec42."""
    cron_secret, verify_token = "Cr0n+Secret/Value=sec42", "Ver1fy+Token/Value=x9"
    settings = settings.model_copy(
        update={"cron_secret": SecretStr(cron_secret), "whatsapp_verify_token": SecretStr(verify_token)}
    )
    port = free_port()
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log:
        web = subprocess.Popen(
            [sys.executable, "-m", "waypost.cli", "serve", "--port", str(port)],
            env=waypost_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, timeout=20)
            encoded = quote(cron_secret, safe="")
            lower_hex = re.sub(r"%[0-9A-F]{2}", lambda code: code.group().lower(), encoded)
            for token in (encoded, lower_hex, quote_plus(cron_secret)):
                answer = httpx.get(f"{url}/api/cron/run-outbound-jobs?token={token}")
                assert answer.status_code == 200, answer.text  # the server decodes every form
            handshake = f"hub.mode=subscribe&hub.verify_token={quote(verify_token, safe='')}&hub.challenge=42"
            assert httpx.get(f"{url}/api/webhooks/whatsapp?{handshake}").text == "42"
            for search in ("/inbox?q=Alice%20Privatename", "/api/inbox/conversations?q=%2B1%20555%20867%205309"):
                httpx.get(url + search)
            assert httpx.get(f"{url}/inbox?filter=unread&deleted=1").status_code == 303
        finally:
            web.terminate()
            web.wait(timeout=15)
    logged = log_path.read_text()
    assert "token=[REDACTED]" in logged and "hub.verify_token=[REDACTED]" in logged
    assert "filter=unread&deleted=1" in logged  # harmless parameters stay readable
    for leak in (cron_secret, encoded, lower_hex, quote_plus(cron_secret), quote(verify_token, safe="")):
        assert leak not in logged, leak
    assert logged.count("q=[REDACTED]") == 2
    for private in ("Privatename", "%2B1%20555%20867%205309", "+1 555 867 5309", "555%20867"):
        assert private not in logged, private  # (bare digits could turn up in a hex request id)


def test_every_documented_way_to_start_a_process_logs_json_only(settings: Settings, tmp_path: Path) -> None:
    """`uvicorn webhook.app:app`, `waypost serve --workers 2`, `waypost worker` and
    `procrastinate --app=worker.app worker`, with WAYPOST_LOG_FORMAT=json: not one plain line."""
    env = waypost_env(settings, WAYPOST_LOG_FORMAT="json")
    web_port, multi_port = free_port(), free_port()
    commands = {
        "uvicorn": ([sys.executable, "-m", "uvicorn", "webhook.app:app", "--port", str(web_port)], web_port),
        "serve --workers 2": (
            [sys.executable, "-m", "waypost.cli", "serve", "--port", str(multi_port), "--workers", "2"],
            multi_port,
        ),
        "waypost worker": ([sys.executable, "-m", "waypost.cli", "worker"], None),
        "procrastinate worker": ([sys.executable, "-m", "procrastinate", "--app=worker.app", "worker"], None),
    }
    processes = {}
    for name, (argv, _) in commands.items():
        log = (tmp_path / f"{name}.log").open("w")
        processes[name] = (subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT), log)
    try:
        for _, port in commands.values():
            if port is not None:
                wait_until_ready(f"http://127.0.0.1:{port}", timeout=30)
                for _ in range(4):  # new connections: both processes of the pair answer some
                    httpx.get(f"http://127.0.0.1:{port}/healthz")
        with psycopg.connect(settings.require_database_url(), autocommit=True) as conn:
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()[0] < 2:  # type: ignore[index]
                assert time.monotonic() < deadline, "the workers did not start"
                time.sleep(0.05)
    finally:
        for process, _ in processes.values():
            process.terminate()
        for process, log in processes.values():
            process.wait(timeout=20)
            log.close()
    for name in commands:
        lines = [line for line in (tmp_path / f"{name}.log").read_text().splitlines() if line.strip()]
        assert lines, name
        plain = []
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                plain.append(line)
        assert plain == [], (name, plain)


def test_the_queue_depth_reads_zero_when_the_queue_is_empty(observed: Settings) -> None:
    with WebServer(observed) as web:
        samples = scrape(web.url + "/metrics")
    for queue in (REPLY_QUEUE, MAINTENANCE_QUEUE):
        assert samples[f'waypost_queue_depth{{queue="{queue}"}}'] == 0, queue
        assert samples[f'waypost_queue_oldest_seconds{{queue="{queue}"}}'] == 0, queue


@pytest.mark.usefixtures("fake_graph")  # its worker sends
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
        # 600 s and however long the command took to start (seconds, on a busy machine)
        assert stuck.returncode == 1 and re.search(r"reply job\(s\) pending, the oldest for 6[0-5]\ds", stuck.stdout)
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


def test_a_log_record_gathers_only_what_the_formats_show(monkeypatch: pytest.MonkeyPatch) -> None:
    """setup_logging turns off the caller's frame walk and the thread, process and task names, which
    no format here shows (a third of a line's cost, issue 17); the line itself is whole."""
    import io
    import logging

    from waypost import logs

    flags = ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")
    for flag in (name for name in flags if hasattr(logging, name)):  # put back after the test
        monkeypatch.setattr(logging, flag, getattr(logging, flag))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.setup_logging("INFO", "text")
    records: list[logging.LogRecord] = []
    root.handlers[0].addFilter(lambda record: records.append(record) or True)
    with logs.log_context(request_id="r-1", job_id=7):
        logging.getLogger("waypost.test").info("stage %s", "send")
    (record,) = records
    assert (record.pathname, record.thread, record.process) == ("(unknown file)", None, None)
    assert stream.getvalue().endswith("INFO waypost.test request_id=r-1 job_id=7 stage send\n")
