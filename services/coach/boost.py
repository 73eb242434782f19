"""Boost and hyper-boost: run exactly N rounds for one learner now, through training's batch
endpoint, in ceil(N / batchSize) sequential calls of at most batchSize rounds, and return the
real round ids. Works on any replica (it is not part of the leader's loop)."""

from __future__ import annotations

from typing import Any

from services.coach.store import CoachStore
from services.coach.training_api import HttpTrainingApi, error_of
from shared.errors import ApiError, Conflict, NotFound, UpstreamError


def _learner_error(err: dict[str, Any], done: list[dict[str, Any]]) -> ApiError:
    code = str(err.get("code", "training_error"))
    message = str(err.get("message") or code)
    details = {"learner": err.get("learner"), "roundsCommitted": len(done), "results": done}
    if code == "learner_not_found":
        return NotFound(message, code=code, details=details)
    if code == "training_not_started":
        return Conflict(
            f"Training is not started for learner {err.get('learner')!r}: "
            "POST /api/v1/training/start first",
            code=code,
            details=details,
        )
    return Conflict(message, code=code, details=details)


async def boost(
    store: CoachStore,
    training: HttpTrainingApi,
    *,
    learner: str,
    rounds: int,
    batch_size: int,
) -> tuple[list[dict[str, Any]], int]:
    """Run `rounds` rounds for `learner`; returns (results, number of calls)."""
    results: list[dict[str, Any]] = []
    calls = 0
    remaining = rounds
    try:
        while remaining > 0:  # bounded: ceil(rounds / batch_size) iterations
            n = min(batch_size, remaining)
            calls += 1
            status, body = await training.post_rounds([learner], n)
            if status != 200 or not isinstance(body, dict):
                code, message = error_of(body, status)
                if 400 <= status < 500:
                    raise ApiError(
                        f"training refused the rounds: {message}",
                        code=code,
                        status=409 if status == 409 else 502,
                        details={"trainingStatus": status, "results": results},
                    )
                raise UpstreamError(
                    f"training answered {status}: {message}",
                    details={"trainingStatus": status, "results": results},
                )
            errors = body.get("errors") or []
            if errors:
                raise _learner_error(errors[0], results)
            for r in body.get("rounds") or []:
                results.append(
                    {"round": r.get("round"), "trained": r.get("trained"), "learner": learner}
                )
            remaining -= n
    finally:
        if results:
            await store.record_boost(len(results))
    return results, calls
