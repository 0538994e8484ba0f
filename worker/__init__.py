"""The worker side of Waypost: the procrastinate App and its tasks.

`procrastinate --app=worker.app worker` loads `app` from here; `waypost worker` runs the same app.
"""

from worker import reply as reply
from worker import sweep as sweep
from worker.queue import app as app

__all__ = ["app"]
