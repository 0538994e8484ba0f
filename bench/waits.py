"""Where PostgreSQL's busy backends wait during a run (`python -m bench.mixed --waits`).

A thread of the driver reads pg_stat_activity every few milliseconds and counts each client backend of
the stack's database running a statement by its wait event. The mean number of backends in each state
over the run says what the statements of the run queue on: a core ("running": on a CPU or waiting for
one), the WAL flush of a commit (IO:WalSync; LWLock:WALWrite while another backend's flush runs), or
NOTIFY's commit lock (Lock:object: every transaction that sent a NOTIFY takes it, cluster-wide, before
its commit record and holds it until after that record's flush, so such commits are flushed one at a
time: README, "One PostgreSQL's ceiling"). Each sample weighs the same; they come every 5 ms plus the
query's own time (about 7 ms apart at 1x), a little less often when PostgreSQL is busiest. Sampling
costs PostgreSQL 0.11 ms of CPU a query with the stack's 16 connections, which the run counts in its
CPU (about 0.19 ms per message at 1x), and the driver a thread of its own. A sampler that fails says
so on its line; the run's other figures stand.
"""

from __future__ import annotations

import collections
from typing import Any

import psycopg

from bench.common import Sampler
from waypost.db import fetch_all_sync

# What a state means, for the printed line
MEANINGS = {
    "running": "on a core or waiting for one",
    "Lock:object": "the commit lock of NOTIFY",
    "IO:WalSync": "its commit's WAL flush",
    "LWLock:WALWrite": "another backend's WAL flush",
    "Lock:transactionid": "a row another transaction holds",
    "Client:ClientRead": "the client",
}


class WaitSampler(Sampler):
    """`with WaitSampler(url) as waits:` samples until the block ends (or `waits.stop()`); then `waits.mean()`
    and `waits.line()`. What stopped the sampling early is kept in `error` and shown by `line()`."""

    def __init__(self, database_url: str, interval: float = 0.005, connect_timeout: int = 10) -> None:
        super().__init__(database_url, interval, connect_timeout)
        self._backends: collections.Counter[str] = collections.Counter()
        self.samples = 0

    def take(self, conn: psycopg.Connection[Any]) -> None:
        for row in fetch_all_sync(conn, "bench_active_waits"):
            self._backends[row["state"]] += row["backends"]
        self.samples += 1

    def mean(self) -> dict[str, float]:
        """The mean number of backends in each state, the most first."""
        if not self.samples:
            return {}
        return {state: n / self.samples for state, n in self._backends.most_common()}

    def line(self, top: int = 6) -> str:
        if self.error is not None:
            stopped = f"the sampler stopped after {self.samples} samples"
            return f"  PostgreSQL backends: not measured, {stopped}: {self.error!r}"
        parts = [
            f"{state} {n:.2f}" + (f" ({MEANINGS[state]})" if state in MEANINGS else "")
            for state, n in list(self.mean().items())[:top]
        ]
        return f"  PostgreSQL backends running a statement, mean over {self.samples} samples: " + (
            ", ".join(parts) or "none"
        )
