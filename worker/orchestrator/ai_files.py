"""Files the AI may answer with (WAYPOST_AI_FILES_DIR): a price list PDF, a menu, terms and conditions.

Only documents WhatsApp sends (PDF, Word, Excel, PowerPoint, plain text: by extension and by content)
of at most Meta's 100 MB, checked when the worker starts. A rules file names one (`file = "name"`);
the `openai` provider offers the model a `send_file` tool whose choices are their names. Either way
the answer is a `document` message whose Graph object names the file (`filename`): the worker copies
it into the message's media row and uploads it before the send (worker.outbound_media).
"""

from __future__ import annotations

import json
import logging
import mimetypes
from pathlib import Path
from typing import Any

from waypost import attachments, kinds
from waypost.errors import WaypostError
from waypost.settings import ConfigurationError
from waypost.text import clean_text
from worker.orchestrator import Answer

logger = logging.getLogger(__name__)

TOOL = "send_file"


def check(path: Path) -> str:
    """The file's MIME type, or ConfigurationError saying why WhatsApp cannot send it as a document."""
    mime_type = mimetypes.guess_type(path.name)[0]
    try:
        with path.open("rb") as file:
            head = file.read(attachments.HEAD_BYTES)
        attachments.check_file(mime_type, path.stat().st_size, head, "document")
    except OSError as exc:
        raise ConfigurationError(f"AI file {path}: cannot be read: {exc}") from exc
    except WaypostError as exc:
        raise ConfigurationError(f"AI file {path}: {exc}") from exc
    return str(mime_type)


def load(files_dir: Path | None) -> dict[str, str]:
    """{name: MIME type} of the sendable files in WAYPOST_AI_FILES_DIR (others are logged and left out)."""
    if files_dir is None:
        return {}
    if not files_dir.is_dir():
        raise ConfigurationError(f"WAYPOST_AI_FILES_DIR {files_dir} is not a folder")
    found: dict[str, str] = {}
    for path in sorted(files_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            found[path.name] = check(path)
        except ConfigurationError as exc:
            logger.warning("%s: the AI will not send it", exc)
    return found


def answer(name: str, caption: str | None) -> Answer:
    """A document answer: the file `name`, with `caption` (what the inbox and the history show)."""
    caption = (clean_text(caption or "").strip()[: kinds.CAPTION_MAX]) or None
    return Answer(caption or name, "document", attachments.graph_object("document", caption, name))


def tool(files: dict[str, str]) -> dict[str, Any]:
    """The `send_file` function offered to an OpenAI-compatible model, its choices the file names."""
    return {
        "type": "function",
        "function": {
            "name": TOOL,
            "description": "Send one of the business's files (a document) to the customer, with a short caption.",
            "parameters": {
                "type": "object",
                "properties": {
                    "file": {"type": "string", "enum": sorted(files)},
                    "caption": {"type": "string", "description": "at most 1024 characters"},
                },
                "required": ["file"],
            },
        },
    }


def from_tool_call(message: dict[str, Any], files: dict[str, str]) -> Answer | None:
    """The model's `send_file` call as an answer, or None when it made none (or named no known file)."""
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or function.get("name") != TOOL:
            continue
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = None
        if not isinstance(arguments, dict) or arguments.get("file") not in files:
            logger.warning("the model asked to send a file it was not offered")  # its words: not logged
            continue
        caption = arguments.get("caption") if isinstance(arguments.get("caption"), str) else None
        content = message.get("content") if isinstance(message.get("content"), str) else None
        return answer(arguments["file"], caption or content)
    return None
