"""procrastinate's psycopg connector, with its own statements in autocommit.

Each of procrastinate's queries is one statement (a function call such as
`procrastinate_fetch_job_v2`, which claims the job in that statement), run in a pool block of its
own. A plain pool block wraps it in BEGIN and COMMIT: three round trips for one statement. Here it
is one, which a job pays two or three times (fetch, finish, the next fetch; issue 17). A query run on
the caller's connection (a defer inside the caller's transaction) is left as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import procrastinate
import psycopg

from waypost.db import autocommit


class Connector(procrastinate.PsycopgConnector):
    # _get_cursor is where procrastinate 3.10 (pinned in pyproject) takes a connection for a query
    @contextlib.asynccontextmanager
    async def _get_cursor(
        self, connection: psycopg.AsyncConnection[Any] | None = None
    ) -> AsyncGenerator[psycopg.AsyncCursor[Any]]:
        if connection is not None:
            async with super()._get_cursor(connection) as cursor:
                yield cursor
            return
        async with autocommit(self.pool) as conn, super()._get_cursor(conn) as cursor:
            yield cursor
