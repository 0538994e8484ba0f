"""`waypost dev` from a clean directory: comes up, answers, replies to `waypost simulate`, stops cleanly."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.conftest import wait_until
from tests.inbox_client import sign_in
from waypost.devtools.net import free_port


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
        assert 'bootstrap.py waypost simulate "What are your opening hours?"' in output
        assert re.search(r"WHATSAPP_APP_SECRET=\S{20,}", output)
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        # Starting says one line per component: initdb, pg_ctl and the children's own lines wait.
        before_banner = output.split("Waypost is running")[0].strip().splitlines()
        print("\n".join(before_banner))
        assert len(before_banner) <= 7, before_banner
        assert [line for line in before_banner if "✓" in line] == before_banner[1:]
        for noise in ("initdb", "pg_ctl", "Uvicorn running", "Starting worker", "CREATE DATABASE"):
            assert noise not in output.split("Waypost is running")[0]

        # In the dev folder, commands use its dev settings without --env-file, and say so.
        simulated = subprocess.run(
            [sys.executable, "-m", "waypost.cli", "simulate", "What are your opening hours?", "--from", "1555000111"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert simulated.returncode == 0, simulated.stdout + simulated.stderr
        assert "using the dev settings in .waypost/dev.env" in simulated.stderr
        assert "← reply after" in simulated.stdout and "Monday to Friday" in simulated.stdout
        explicit = subprocess.run(
            [sys.executable, "-m", "waypost.cli", "--env-file", str(env_file), "simulate", "hi", "--from", "1555002"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert explicit.returncode == 0 and "dev settings" not in explicit.stderr, explicit.stderr
        # the printed operator signs in to the inbox and sees the simulated conversation
        password = re.search(r"sign in as dev@waypost.local, password (\S+)\)", output)
        assert password, output
        with httpx.Client(base_url=f"http://127.0.0.1:{web_port}") as browser:
            answer = sign_in(browser, email="dev@waypost.local", password=password.group(1))
            assert answer.status_code == 303, answer.text
            assert "+1555000111" in browser.get("/inbox").text
            # a photo: the dev worker fetches it from the dev fake Graph API, and the inbox has its bytes
            photo = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "waypost.cli",
                    "simulate",
                    "--kind",
                    "image",
                    "the receipt",
                    "--from",
                    "1555000333",
                ],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert photo.returncode == 0, photo.stdout + photo.stderr

            def photo_media() -> dict | None:
                listed = browser.get("/api/inbox/conversations").json()["conversations"]
                (found,) = [c for c in listed if c["contact"]["wa_id"] == "1555000333"]
                messages = browser.get(f"/api/inbox/conversations/{found['id']}").json()["messages"]
                media = [m["media"] for m in messages if m["media"]]
                return media[0] if media and media[0]["status"] != "pending" else None

            media = wait_until(photo_media, timeout=30, what="the photo's download")
            assert media["status"] == "stored", media
            assert browser.get(f"/inbox/media/{media['id']}").content[:8] == b"\x89PNG\r\n\x1a\n"
        family = [dev.pid, *(p.pid for p in psutil.Process(dev.pid).children(recursive=True))]
        postmaster = int((tmp_path / ".waypost" / "pgdata" / "postmaster.pid").read_text().split()[0])
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "dev.log").read_text()

    def alive() -> list[int]:
        found = []
        for pid in [*family, postmaster]:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.append(pid)
            except psutil.NoSuchProcess:
                pass
        return found

    wait_until(lambda: not alive(), timeout=15, what="every process of the stack to exit")
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
    assert "✓ PostgreSQL: DATABASE_URL (no embedded PostgreSQL)" in output
    assert not (tmp_path / ".waypost" / "pgdata").exists()
    assert f"DATABASE_URL={database_url}" in (tmp_path / ".waypost" / "dev.env").read_text()


def test_dev_shows_a_failing_component_in_full(tmp_path: Path, database_url: str) -> None:
    """Starting is quiet, but when a component dies its own output is printed, not just its exit code."""
    graph_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WAYPOST_", "WHATSAPP_", "OPENAI_", "CRON_"))}
    env["DATABASE_URL"] = database_url
    with socket.socket() as taken:  # the web app's port is in use
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        web_port = taken.getsockname()[1]
        dev = subprocess.run(
            [sys.executable, "-m", "waypost.cli", "dev", "--port", str(web_port), "--graph-port", str(graph_port)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
        )
    assert dev.returncode == 1
    assert "web exited with code" in dev.stderr
    assert re.search(r"web \| .*address already in use", dev.stderr), dev.stderr


# The production image deletes waypost.devtools (Dockerfile): the commands that need it say so.
WITHOUT_DEVTOOLS = """
import sys, importlib.abc
class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith("waypost.devtools"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, LeftOut())
from waypost.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_dev_commands_say_they_are_left_out_of_an_installation_without_the_dev_tools(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    for command in (["dev"], ["simulate", "hello"]):
        result = subprocess.run(
            [sys.executable, "-c", WITHOUT_DEVTOOLS, *command], capture_output=True, text=True, env=env, cwd=tmp_path
        )
        assert result.returncode == 2, result.stderr
        assert "dev tools, left out of this installation" in result.stderr
        assert "Traceback" not in result.stderr
