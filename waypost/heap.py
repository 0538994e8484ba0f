"""The garbage collector in a long-running process: what start-up loaded is kept out of its scans."""

from __future__ import annotations

import gc


def freeze_startup() -> None:
    """Call once the process is ready. A full collection walks every object the collector tracks, and
    in the web and worker processes nearly all of them are what start-up loaded (modules, classes,
    compiled queries and templates), alive until exit: walking them stalled whatever request or
    reply was running by tens of milliseconds now and then (issue 17). This collects start-up's
    garbage once, then moves every object alive now out of the collector's generations (gc.freeze,
    which Python's docs suggest for exactly this); objects made later are collected as before."""
    gc.collect()
    gc.freeze()
