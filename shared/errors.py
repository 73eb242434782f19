"""API errors. Raise one anywhere in a handler; the error middleware renders the envelope
`{"ok": false, "error": {"code", "message", "details"}}` with the error's status.

Domain errors (shared/domain_errors.py) carry no status: `DOMAIN_STATUS` is the one table that
gives them theirs, and the error middleware renders them through `api_error_of`."""

from __future__ import annotations

from typing import Any

from shared.domain_errors import ConflictError, DomainError, NotFoundError


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
    DomainError: 400,
}


def api_error_of(exc: DomainError) -> ApiError:
    """The HTTP form of a domain error: its status from `DOMAIN_STATUS`, its code and message."""
    status = next(DOMAIN_STATUS[c] for c in type(exc).__mro__ if c in DOMAIN_STATUS)
    return ApiError(exc.message, code=exc.code, details=exc.details, status=status)
