"""Where PostgreSQL's busy backends wait during a run (`python -m bench.mixed --waits`).

A thread of the driver reads pg_stat_activity every few milliseconds and counts each client backend of
the stack's database running a statement by its wait event. The mean number of backends in each state
over the run says what the statements of the run queue on: a core ("running": on a CPU or waiting for
one), the WAL flush of a commit (IO:WalSync; LWLock:WALWrite while another backend's flush runs), or
NOTIFY's commit lock (Lock:object: every transaction that sent a NOTIFY takes it, cluster-wide, before
its commit record and holds it until after that record's flush, so such commits are flushed one at a
time: README, "One PostgreSQL's ceiling"). Sampling costs the driver one query each time, and
PostgreSQL about a tenth of a millisecond: the printed line says how many were taken.
"""

from __future__ import annotations

import collections
import threading
from types import TracebackType

from waypost.db import connect_sync, fetch_all_sync

# What a state means, for the printed line
MEANINGS = {
    "running": "on a core or waiting for one",
    "Lock:object": "the commit lock of NOTIFY",
    "IO:WalSync": "its commit's WAL flush",
    "LWLock:WALWrite": "another backend's WAL flush",
    "Lock:transactionid": "a row another transaction holds",
    "Client:ClientRead": "the client",
}


class WaitSampler:
    """`with WaitSampler(url) as waits:` samples until the block ends (or `waits.stop()`); then `waits.mean()`
    and `waits.line()`."""

    def __init__(self, database_url: str, interval: float = 0.005) -> None:
        self._url = database_url
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-waits", daemon=True)
        self._backends: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self.error: BaseException | None = None

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.stop()
        else:  # the block's own exception is the one to see
            self._stop.set()
            self._thread.join()

    def stop(self) -> None:
        """Sampling ends (it may end before the block does); raises what stopped the sampling early."""
        self._stop.set()
        self._thread.join()
        error, self.error = self.error, None
        if error is not None:
            raise error

    def _sample(self) -> None:
        try:
            with connect_sync(self._url, autocommit=True) as conn:
                while not self._stop.is_set():
                    for row in fetch_all_sync(conn, "bench_active_waits"):
                        self._backends[row["state"]] += row["backends"]
                    self.samples += 1
                    self._stop.wait(self._interval)
        except BaseException as exc:  # raised by __exit__, in the driver's thread
            self.error = exc

    def mean(self) -> dict[str, float]:
        """The mean number of backends in each state, the most first."""
        if not self.samples:
            return {}
        return {state: n / self.samples for state, n in self._backends.most_common()}

    def line(self, top: int = 6) -> str:
        parts = [
            f"{state} {n:.2f}" + (f" ({MEANINGS[state]})" if state in MEANINGS else "")
            for state, n in list(self.mean().items())[:top]
        ]
        return f"  PostgreSQL backends running a statement, mean over {self.samples} samples: " + (
            ", ".join(parts) or "none"
        )
