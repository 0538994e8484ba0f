"""`waypost dev` from a clean directory: comes up, answers, replies to `waypost simulate`, stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.inbox_client import sign_in
from tests.net import free_port


def test_dev_runs_the_stack_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    web_port, graph_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WAYPOST_", "WHATSAPP_", "OPENAI_", "CRON_", "DATABASE_URL"))
    }
    log = (tmp_path / "dev.log").open("w")
    started = time.monotonic()
    dev = subprocess.Popen(
        [sys.executable, "-m", "waypost.cli", "dev", "--port", str(web_port), "--graph-port", str(graph_port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while "Waypost is running" not in (tmp_path / "dev.log").read_text():
            assert dev.poll() is None, (tmp_path / "dev.log").read_text()
            assert time.monotonic() < deadline, "dev did not become ready"
            time.sleep(0.1)
        ready_after = time.monotonic() - started
        output = (tmp_path / "dev.log").read_text()
        print(f"\nwaypost dev ready after {ready_after:.1f} s (first start, fresh data directory)")
        assert httpx.get(f"http://127.0.0.1:{web_port}/readyz").status_code == 200
        env_file = tmp_path / ".waypost" / "dev.env"
        assert "--env-file .waypost/dev.env simulate" in output
        assert re.search(r"WHATSAPP_APP_SECRET=\S{20,}", output)
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"

        simulated = subprocess.run(
            [
                sys.executable,
                "-m",
                "waypost.cli",
                "--env-file",
                str(env_file),
                "simulate",
                "What are your opening hours?",
                "--from",
                "15550001111",
                "--name",
                "Tess",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert "← reply after" in simulated.stdout and "Monday to Friday" in simulated.stdout
        # the printed operator signs in to the inbox and sees the simulated conversation
        password = re.search(r"sign in as dev@waypost.local, password (\S+)\)", output)
        assert password, output
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}") as browser:
            answer = sign_in(browser, email="dev@waypost.local", password=password.group(1))
            assert answer.status_code == 303, answer.text
            assert "Tess" in browser.get("/inbox").text
        family = [dev.pid, *(p.pid for p in psutil.Process(dev.pid).children(recursive=True))]
        postmaster = int((tmp_path / ".waypost" / "pgdata" / "postmaster.pid").read_text().split()[0])
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()
    time.sleep(0.5)
    assert [
        pid
        for pid in [*family, postmaster]
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ] == []
    assert not (tmp_path / ".waypost" / "pgdata" / "postmaster.pid").exists()
    assert "dev: embedded PostgreSQL stopped" in (tmp_path / "dev.log").read_text()


def test_dev_with_database_url_uses_it_and_starts_no_postgres(tmp_path: Path, database_url: str) -> None:
    web_port, graph_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAYPOST_", "WHATSAPP_", "OPENAI_", "CRON_"))}
    env["DATABASE_URL"] = database_url
    log_path = tmp_path / "dev.log"
    with log_path.open("w") as log:
        dev = subprocess.Popen(
            [sys.executable, "-m", "waypost.cli", "dev", "--port", str(web_port), "--graph-port", str(graph_port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while "Waypost is running" not in log_path.read_text():
                assert dev.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
            assert httpx.get(f"http://127.0.0.1:{web_port}/readyz").status_code == 200
        finally:
            dev.send_signal(signal.SIGINT)
            assert dev.wait(timeout=60) == 0
    output = log_path.read_text()
    assert "dev: using DATABASE_URL (no embedded PostgreSQL)" in output
    assert not (tmp_path / ".waypost" / "pgdata").exists()
    assert f"DATABASE_URL={database_url}" in (tmp_path / ".waypost" / "dev.env").read_text()
