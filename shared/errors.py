"""API errors. Raise one anywhere in a handler; the error middleware renders the envelope
`{"ok": false, "error": {"code", "message", "details"}}` with the error's status.

Domain errors (shared/domain_errors.py) carry no status: `DOMAIN_STATUS` is the one table that
gives them theirs, and the error middleware renders them through `api_error_of`."""

from __future__ import annotations

from typing import Any

from redis.exceptions import OutOfMemoryError, ResponseError

from shared.domain_errors import (
    ConflictError,
    DomainError,
    NotFoundError,
    NotReplicated,
    RequestMismatch,
)
from shared.logging import get_logger

log = get_logger(__name__)


class ApiError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "ok": False,
            "error": {"code": self.code, "message": self.message, "details": self.details},
        }


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class ValidationFailed(ApiError):
    status, code = 422, "validation_error"


class TooManyRequests(ApiError):
    status, code = 429, "rate_limited"


class UpstreamError(ApiError):
    """A service this one depends on failed or did not answer in time."""

    status, code = 502, "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status, code = 504, "upstream_timeout"


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


# The HTTP status of each kind of domain error, looked up along the error's class hierarchy (the
# nearest listed ancestor wins), so a service's own subclass of a kind needs no entry here.
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    RequestMismatch: 422,
    NotReplicated: 503,
    DomainError: 400,
}


def api_error_of(exc: DomainError) -> ApiError:
    """The HTTP form of a domain error: its status from `DOMAIN_STATUS`, its code and message,
    and `Retry-After` when the error says when to retry (`retry_after_s`)."""
    status = next(DOMAIN_STATUS[c] for c in type(exc).__mro__ if c in DOMAIN_STATUS)
    retry_after = getattr(exc, "retry_after_s", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(exc.message, code=exc.code, details=exc.details, status=status, headers=headers)


# ---- Redis refusals --------------------------------------------------------------------------
# Matched on redis-py's class (which drops the `OOM` code from the text) and on the reply text:
# a refusal inside a Lua script reaches the caller as a plain ResponseError on Redis 6.2
# (`Error running script … -OOM command not allowed …`).
OOM_MARK = "command not allowed when used memory"
# The prefix of the error reply a fleet script returns when it refuses its arguments, before
# any write (shared/lua/*.lua, meta_commit.lua, reports_apply.lua, promote_due.lua).
SCRIPT_INVALID_MARK = "INVALID "


class RedisOutOfMemory(ServiceUnavailable):
    status, code = 503, "redis_out_of_memory"


class ScriptRejected(ApiError):
    """A fleet script refused its arguments (and wrote nothing): the caller's bug, not the
    client's, so a 500 — but one that says what was refused and that nothing changed."""

    status, code = 500, "script_rejected_input"


def redis_error_of(exc: BaseException) -> ApiError | None:
    """The API error for a Redis error reply the fleet knows (None for any other exception):
    Redis at `maxmemory` refusing a write -> 503 `redis_out_of_memory` (retry later; the
    dashboard raises an alert), a script refusing its input -> 500 `script_rejected_input`.
    The error middleware calls this, so every service answers these the same way."""
    if not isinstance(exc, ResponseError):
        return None
    message = str(exc)
    if isinstance(exc, OutOfMemoryError) or OOM_MARK in message:
        log.warning("redis_out_of_memory", error=message[:300])
        return RedisOutOfMemory(
            "Redis is out of memory (maxmemory reached) and refuses writes; nothing was "
            "written. Try again after memory is freed or the limit raised.",
            headers={"Retry-After": "5"},
        )
    if message.startswith(SCRIPT_INVALID_MARK) or f" {SCRIPT_INVALID_MARK}" in message:
        log.error("script_rejected_input", error=message[:300])
        return ScriptRejected(
            "A Redis script refused its arguments; nothing was written.",
            details=message[message.find(SCRIPT_INVALID_MARK) :][:300],
        )
    return None
