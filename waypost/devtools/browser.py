"""Headless Chromium for the browser tests and the inbox benchmark: Debian's package, driven by
Playwright through its executable_path (no browser download)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    candidates = [os.environ.get("WAYPOST_TEST_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError(
        "no Chromium for the browser tests: `apt-get install chromium` (Debian), or set WAYPOST_TEST_CHROMIUM"
    )
