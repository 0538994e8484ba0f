"""Waypost's shared core: settings, database pool, SQL loader, schema tools and the CLI.

`webhook` and `worker` both import from here; this package imports neither at module level.
The dev tools (`waypost dev`, `simulate`, the fakes the tests use) live apart in `waypost.devtools`.
"""

__version__ = "0.1.0"
