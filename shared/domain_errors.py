"""Errors the domain raises when a rule refuses an operation. They carry the error envelope's
`code` and `message` but no HTTP status: stores and engines stay free of HTTP, and the one table in
shared/errors.py (`DOMAIN_STATUS`) decides the status the error middleware answers with.

A service's own error subclasses one of the kinds below (`NotFoundError`, `ConflictError`) and so
gets its status from the table without touching it."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code: str = "domain_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFoundError(DomainError):
    """The thing the operation names does not exist."""

    code = "not_found"


class ConflictError(DomainError):
    """The current state refuses the operation (exists already, changed meanwhile, not ready)."""

    code = "conflict"


class LearnerNotFound(NotFoundError):
    code = "learner_not_found"

    def __init__(self, learner: str) -> None:
        super().__init__(f"Learner {learner!r} not found")
        self.learner = learner


class LearnerExists(ConflictError):
    code = "learner_exists"

    def __init__(self, learner: str) -> None:
        super().__init__(f"Learner {learner!r} already exists")
        self.learner = learner


class VersionConflict(ConflictError):
    """Concurrent writers kept changing the state between this caller's read and its commit."""

    code = "version_conflict"


class RequestMismatch(DomainError):
    """The request contradicts what an earlier one established (an Idempotency-Key sent again
    with another body)."""

    code = "request_mismatch"


class IdempotencyKeyReused(RequestMismatch):
    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__(
            "This Idempotency-Key was already used for a different request; "
            "send a new key for a new request"
        )


class NotReplicated(DomainError):
    """A write reached the Redis master, but fewer replicas than required confirmed it in time
    (WAIT): a failover now could lose it, so it is not acknowledged. Retried later with the same
    Idempotency-Key, the request is answered from the recorded write once it is replicated."""

    code = "not_replicated"
    retry_after_s = 1

    def __init__(self, acked: int, wanted: int, timeout_ms: int, reply: Any = None) -> None:
        super().__init__(
            f"The write was not confirmed by {wanted} Redis replica(s) within {timeout_ms} ms "
            f"({acked} did), so it is not acknowledged; retry with the same Idempotency-Key",
            details={"replicas": acked, "required": wanted, "timeoutMs": timeout_ms},
        )
        self.acked = acked
        self.wanted = wanted
        self.reply = reply  # what the master answered, for a caller that needs it
