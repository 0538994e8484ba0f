"""Meta's webhook signature: HMAC-SHA256 of the raw body with the app secret, as X-Hub-Signature-256."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 value Meta would send for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
