"""Text from outside (webhooks, the model, operators) made safe to store and to send.

PostgreSQL's text and jsonb cannot hold NUL, and neither PostgreSQL nor the Graph API can take a lone
UTF-16 surrogate (Python lets one through from a JSON `\\ud800` escape or a broken decoder). Text we
store or send on someone's behalf is cleaned; text an operator types is refused instead (`unfit`),
so that they see what is wrong.
"""

from __future__ import annotations

import re

_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
# What stands in for a character that was dropped: visible, so nobody wonders where it went.
REPLACEMENT = "\ufffd"


def clean_text(value: str) -> str:
    """`value` with NUL characters and lone surrogates replaced by U+FFFD."""
    if _NUL in value:
        value = value.replace(_NUL, REPLACEMENT)
    return _SURROGATE.sub(REPLACEMENT, value)


def unfit(value: str) -> str | None:
    """Why `value` cannot be stored as it is (None when it can)."""
    if _NUL in value:
        return "contains a NUL character"
    if _SURROGATE.search(value):
        return "contains an unpaired UTF-16 surrogate"
    return None


def mime_base(mime_type: str | None) -> str:
    """A MIME type from outside without its parameters, lowercase: `audio/ogg; codecs=opus` → `audio/ogg`."""
    return (mime_type or "").split(";")[0].strip().lower()
