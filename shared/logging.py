"""structlog JSON logging: one line per event, with service, request id and learner bound."""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from typing import Any, cast

import orjson
import structlog
from structlog.typing import EventDict, Processor

_SECRET_KEYS = {"authorization", "token", "api_token", "password"}
# The request being handled: its id and the request (whose `learner` query parameter a line
# names), set by the request middleware. Read when a line is written, so a request that logs
# nothing pays one ContextVar set and reset, not a logger binding.
CURRENT_REQUEST: ContextVar[tuple[str, Any] | None] = ContextVar("tooloo_request", default=None)


def current_request_id() -> str | None:
    current = CURRENT_REQUEST.get()
    return current[0] if current is not None else None


def _request_context(_: Any, __: str, event: EventDict) -> EventDict:
    current = CURRENT_REQUEST.get()
    if current is not None:
        request_id, request = current
        event.setdefault("request_id", request_id)
        learner = request.query.get("learner")
        if learner:
            event.setdefault("learner", learner[:64])
    return event


def _redact(_: Any, __: str, event: EventDict) -> EventDict:
    # Secrets must never reach a log line, whoever passes them in.
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "***"
    return event


# Credentials inside free text: aiohttp's "Error handling request" log quotes the offending header
# line of a malformed request (`b'Authorization: Bearer <token>\x01'`), and exception messages
# may quote headers too. Key-based redaction cannot see those, so the rendered line is scrubbed.
_SCHEME_VALUE = re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s'\",;\\]+")
_HEADER_VALUE = re.compile(
    r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?!bearer\b|basic\b)[^\s'\",;\\]+"
)


# Credentials in a URL's user-info (`redis://:pw@host`, `rediss://user:pw@host`, any scheme):
# REDIS_URL reaches logs through start-up messages and redis-py's exception texts. The user-info
# runs to the last `@` before the host part ends (a raw `@` in a password is common), and its
# password (after the first `:`), or the whole of it when there is no `:`, becomes `***`.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s'\"<>]*)@")


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _ = match[2].partition(":")
    return f"{match[1]}{user}:***@" if colon else f"{match[1]}***@"


def redact_text(text: str) -> str:
    """`text` with bearer/basic credentials, Authorization values and URL passwords masked."""
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    return _HEADER_VALUE.sub(r"\1***", _SCHEME_VALUE.sub(r"\1\2***", text))


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


def _redact_rendered(_: Any, __: str, line: str) -> str:
    return redact_text(line)


# After the renderer a processor receives the rendered line, not an event dict, which
# structlog's `Processor` type does not describe; this one runs last, on that line.
_REDACT_RENDERED = cast(Processor, _redact_rendered)


def configure_logging(service: str, level: str = "info") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(stream=sys.stdout, level=numeric, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_RedactingFormatter("%(message)s"))
    # aiohttp's access log duplicates our request log; keep only warnings from libraries.
    for noisy in ("aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _request_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(
                serializer=lambda obj, **_: orjson.dumps(obj).decode()
            ),
            _REDACT_RENDERED,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()
