"""One logging setup for the web and worker processes, uvicorn's access log and procrastinate's
own logs included (all of them log through the standard library, so one root handler serves all;
structlog would only add a second pipeline to bridge).

`request_id` and `job_id` live in context variables and a filter stamps them on every record, so one
inbound message can be followed from the webhook line to the worker's `job done`; procrastinate's
own lines about a job get them from the job they carry. Output is key=value text for a terminal, or
JSON lines with WAYPOST_LOG_FORMAT=json. Every line passes a redaction filter: the configured secrets
never reach the output, raw or percent-, JSON- or base64-encoded, and the access log keeps the
values of known harmless query parameters only (tokens and inbox searches are redacted by name).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import datetime as dt
import io
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote_plus

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="-")

FORMAT = "%(asctime)s %(levelname)s %(name)s request_id=%(request_id)s job_id=%(job_id)s %(message)s"
REDACTED = "[REDACTED]"
# Attributes every LogRecord has; anything else was passed in `extra=` (procrastinate passes many).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id", "job_id"}


# Query parameters whose values the access log may show; every other value is redacted.
LOGGABLE_QUERY = frozenset({"hub.mode", "filter", "deleted", "snoozed", "include_read", "include_snoozed"})
# Parameters known to carry secrets or personal data: named in the log, their values never shown.
SECRET_QUERY = frozenset({"token", "hub.verify_token", "hub.challenge", "access_token", "q", "next"})
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def _job_of(record: logging.LogRecord) -> dict[str, Any] | None:
    """The job a procrastinate record is about (its `job` extra, or a `jobs` extra of one)."""
    job = getattr(record, "job", None)
    if job is None:
        jobs = getattr(record, "jobs", None)
        job = jobs[0] if isinstance(jobs, list) and len(jobs) == 1 else None
    return job if isinstance(job, dict) and job.get("id") is not None else None


def job_request_id(task_name: str, job_id: int | str, task_kwargs: dict[str, Any] | None) -> str:
    """The request a job serves: the one that deferred it, or for a periodic job its own run."""
    given = (task_kwargs or {}).get("request_id")
    return str(given) if given else f"{task_name}-{job_id}"


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        job = _job_of(record)
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        job_id = getattr(record, "job_id", None) or job_id_var.get()
        if job is not None:
            if job_id == "-":
                job_id = str(job["id"])
            if request_id == "-":
                request_id = job_request_id(str(job.get("task_name")), job["id"], job.get("task_kwargs"))
        record.request_id, record.job_id = request_id, job_id
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) >= 3:
            args = list(record.args)
            args[2] = redact_query(str(args[2]))
            record.args = tuple(args)
        return True


def redact_query(path: str) -> str:
    """A request path with the values of its query parameters redacted, but for harmless ones."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    kept = []
    for pair in query.split("&"):
        name, has_value, _ = pair.partition("=")
        known = unquote_plus(name)
        if known in LOGGABLE_QUERY:
            kept.append(pair)
        elif known in SECRET_QUERY and has_value:
            kept.append(f"{name}={REDACTED}")
        else:  # an unknown name may itself be data
            kept.append(REDACTED)
    return f"{base}?{'&'.join(kept)}"


def _encodings(secret: str) -> set[str]:
    """The forms a secret takes in URLs, JSON and headers."""
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret), json.dumps(secret)[1:-1]}
    forms |= {_PERCENT.sub(lambda code: code.group().lower(), form) for form in forms}  # %2f as well as %2F
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        forms |= {encoded.decode(), encoded.decode().rstrip("=")}
    return forms


class RedactingFormatter(logging.Formatter):
    """Formats, then replaces any configured secret, in any of its usual encodings, by [REDACTED]."""

    def __init__(self, secrets: Iterable[str], fmt: str | None = None) -> None:
        super().__init__(fmt)
        forms = {form for secret in secrets if len(secret) >= 6 for form in _encodings(secret)}
        # One pass over each line, not one per secret and encoding; longest first, so that a secret
        # containing another is replaced whole.
        ordered = sorted((form for form in forms if len(form) >= 6), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def redact(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text) if self._pattern else text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: ts, level, logger, message, request_id, job_id, exception, and the
    record's extra fields (procrastinate's `action`, `job`, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "job_id": getattr(record, "job_id", "-"),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        return self.redact(json.dumps(line, default=str, ensure_ascii=False))


class PlainLinesAsRecords(io.TextIOBase):
    """sys.stderr under a command line that prints plain lines beside its logging (procrastinate's
    "Launching a worker on all queues", its exit message): in JSON mode each line becomes a record of
    `logger_name`, so the process prints JSON only."""

    def __init__(self, logger_name: str, original: TextIO) -> None:
        self.logger = logging.getLogger(logger_name)
        self.original = original  # where the log handler writes
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if line.strip():
                self.logger.info("%s", line)
        return len(text)


def turn_plain_stderr_into_records(logger_name: str) -> None:
    if not isinstance(sys.stderr, PlainLinesAsRecords):
        sys.stderr = PlainLinesAsRecords(logger_name, sys.stderr)


def setup_logging(level: str = "INFO", fmt: str = "text", secrets: Iterable[str] = ()) -> None:
    # the real stderr, also when turn_plain_stderr_into_records() stands in front of it
    stream = sys.stderr.original if isinstance(sys.stderr, PlainLinesAsRecords) else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else RedactingFormatter(secrets, FORMAT))
    handler.addFilter(ContextFilter())
    # The logging HOWTO's "Optimization": no format here shows the caller's file and line, its thread,
    # process or task, so a record does not gather them; the caller's frame walk was about a third of
    # a line's cost (issue 17: the worker writes several lines a reply).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    if sys.version_info >= (3, 12):
        logging.logAsyncioTasks = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn and procrastinate log through the root handler: one format, one redaction.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "procrastinate"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


@contextlib.contextmanager
def log_context(*, request_id: str | None = None, job_id: str | int | None = None) -> Iterator[None]:
    tokens = []
    if request_id is not None:
        tokens.append((request_id_var, request_id_var.set(request_id)))
    if job_id is not None:
        tokens.append((job_id_var, job_id_var.set(str(job_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
