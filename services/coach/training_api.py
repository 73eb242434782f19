"""The coach's calls to training's batch endpoint (`POST /api/v1/training/rounds`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.commit_rounds import IDEMPOTENCY_HEADER
from shared.errors import UpstreamError
from shared.http_client import ServiceClient

ROUNDS_PATH = "/api/v1/training/rounds"
FENCED = "fenced"  # training's per-learner code: the shard's fence is no longer our token


@dataclass(slots=True)
class BatchOutcome:
    """What one batch call did. `upstream_error` is set when training could not be reached,
    timed out or failed (5xx/429): nothing is known to be committed, the learners keep their
    turn. Otherwise `rounds` and `errors` are training's answer (a 4xx becomes errors for every
    learner of the call), and `fenced` the learners whose shard's fence had moved on (another
    coach replica owns the shard now: nothing was committed for them, and they are not ours to
    count or advance)."""

    learners: list[str]
    rounds: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    upstream_error: str | None = None
    status: int = 0


class TrainingApi(Protocol):
    """What the loop needs of training: one batch of rounds, never raising for an outage."""

    async def run_batch(
        self, learners: list[str], rounds_per_learner: int, fences: dict[str, int] | None = None
    ) -> BatchOutcome: ...


class HttpTrainingApi:
    def __init__(self, client: ServiceClient, *, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s

    async def post_rounds(
        self,
        learners: list[str],
        rounds_per_learner: int,
        idempotency_key: str | None = None,
        fences: dict[str, int] | None = None,
    ) -> tuple[int, Any]:
        """One call, answered as is; raises UpstreamError/UpstreamTimeout when training does not
        answer. With `idempotency_key`, training commits the call at most once (a retry with the
        key answers the first call's round ids). With `fences` (shard -> fencing token of this
        replica's lease), each learner's commit carries its shard's token and training refuses
        it (outcome `fenced`) once the shard's fence moved on."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key is not None else None
        body: dict[str, Any] = {"learners": learners, "rounds_per_learner": rounds_per_learner}
        if fences:
            body["fences"] = fences
        return await self.client.post(
            "training", ROUNDS_PATH, body, timeout_s=self.timeout_s, headers=headers
        )

    async def run_batch(
        self, learners: list[str], rounds_per_learner: int, fences: dict[str, int] | None = None
    ) -> BatchOutcome:
        try:
            status, body = await self.post_rounds(learners, rounds_per_learner, fences=fences)
        except UpstreamError as exc:
            return BatchOutcome(learners, upstream_error=exc.message)
        return outcome_of(learners, status, body)


def outcome_of(learners: list[str], status: int, body: Any) -> BatchOutcome:
    """Training's answer to one batch call, for the loop."""
    outcome = BatchOutcome(learners, status=status)
    if status == 200 and isinstance(body, dict):
        outcome.rounds = list(body.get("rounds") or [])
        for err in body.get("errors") or []:
            if isinstance(err, dict) and err.get("code") == FENCED:
                outcome.fenced.append(str(err.get("learner")))
            else:
                outcome.errors.append(err)
    elif status >= 500 or status == 429:
        code, message = error_of(body, status)
        outcome.upstream_error = f"training answered {status} {code}: {message}"
    else:
        code, message = error_of(body, status)
        outcome.errors = [{"learner": x, "code": code, "message": message} for x in learners]
    return outcome


def error_of(body: Any, status: int) -> tuple[str, str]:
    """(code, message) of an error answer, whatever its shape."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code", f"http_{status}")), str(err.get("message", ""))
    return f"http_{status}", str(body)[:200]
