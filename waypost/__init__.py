"""Waypost's shared core: settings, database pool, SQL loader, schema tools and the CLI.

`webhook` and `worker` both import from here; this package imports neither at module level.
"""

__version__ = "0.1.0"
