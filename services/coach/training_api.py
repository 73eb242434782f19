"""The coach's calls to training's batch endpoint (`POST /api/v1/training/rounds`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.http_client import ServiceClient

ROUNDS_PATH = "/api/v1/training/rounds"


@dataclass(slots=True)
class BatchOutcome:
    """What one batch call did. `upstream_error` is set when training could not be reached,
    timed out or failed (5xx/429): nothing is known to be committed, the learners keep their
    turn. Otherwise `rounds` and `errors` are training's answer (a 4xx becomes errors for every
    learner of the call)."""

    learners: list[str]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    upstream_error: str | None = None
    status: int = 0


async def run_batch(
    client: ServiceClient, learners: list[str], rounds_per_learner: int, *, timeout_s: float
) -> tuple[int, Any]:
    """One call; raises UpstreamError/UpstreamTimeout when training does not answer."""
    return await client.post(
        "training",
        ROUNDS_PATH,
        {"learners": learners, "rounds_per_learner": rounds_per_learner},
        timeout_s=timeout_s,
    )


def error_of(body: Any, status: int) -> tuple[str, str]:
    """(code, message) of an error answer, whatever its shape."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code", f"http_{status}")), str(err.get("message", ""))
    return f"http_{status}", str(body)[:200]
