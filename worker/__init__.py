"""The worker side of Waypost: the procrastinate App and its tasks.

`procrastinate --app=worker.app worker` loads `app` from here; `waypost worker` runs the same app.
`app` is imported on first use (PEP 562): the web side imports `worker.tasks`, and importing the
package must not load the worker with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.queue import app as app

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.queue import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
