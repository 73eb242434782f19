"""Boost and hyper-boost: run exactly N rounds for one learner now, through training's batch
endpoint, in ceil(N / batchSize) sequential calls of at most batchSize rounds, and return the
real round ids. Works on any replica (it is not part of the leader's loop).

Idempotency, end to end. A boost sent with an Idempotency-Key K first ties K to the boost's
request hash (a coach key, 24 h: the same K with another body is refused with 422 before any
round runs), then sends its i-th call to training with the derived key `call_key(K, i)`.
Training records each call's commit under that key in the learner's slot, so a retried boost
(same K, same body) replays the calls already committed, with their round ids, and commits only
the calls the first attempt never got through: N rounds in all, whatever failed in between."""

from __future__ import annotations

import hashlib
from typing import Any

from services.coach.store import CoachStore
from services.coach.training_api import HttpTrainingApi, error_of
from shared import idempotency
from shared.commit_rounds import request_hash
from shared.errors import ApiError, Conflict, NotFound, UpstreamError


def call_key(key: str, call: int) -> str:
    """The Idempotency-Key of a boost's `call`-th training call: derived from the client's key,
    fixed-length and within training's charset whatever the client's key was."""
    return "boost-" + hashlib.sha256(f"{key}\x00{call}".encode()).hexdigest()[:40]


async def claim_boost_key(store: CoachStore, key: str, fingerprint: str) -> None:
    """Tie the client's Idempotency-Key to this boost's request hash for 24 h (SET NX, then
    read: whichever boost set it first owns it); 422 when it is tied to another request."""
    await idempotency.claim(store.redis, store.keys.coach_boost_idempotency(key), fingerprint)


def boost_fingerprint(path: str, learner: str, rounds: int, batch_size: int) -> str:
    return request_hash(path, learner, str(rounds), str(batch_size))


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
    idempotency_key: str | None = None,
) -> tuple[list[dict[str, Any]], int, bool]:
    """Run `rounds` rounds for `learner`; returns (results, number of calls, whether every call
    was a replay of an earlier boost under `idempotency_key`, i.e. nothing was committed now).
    The caller claims the key first (claim_boost_key)."""
    results: list[dict[str, Any]] = []
    calls = 0
    fresh = 0  # rounds committed by this boost (not replayed): what the boost counters count
    replayed_calls = 0
    remaining = rounds
    try:
        while remaining > 0:  # bounded: ceil(rounds / batch_size) iterations
            n = min(batch_size, remaining)
            calls += 1
            key = call_key(idempotency_key, calls) if idempotency_key is not None else None
            status, body = await training.post_rounds([learner], n, key)
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
            replayed = body.get("replayed") is True
            replayed_calls += 1 if replayed else 0
            for r in body.get("rounds") or []:
                result = {"round": r.get("round"), "trained": r.get("trained"), "learner": learner}
                if r.get("replayed"):
                    result["replayed"] = True  # from training's record: no `trained` kept
                else:
                    fresh += 1
                results.append(result)
            remaining -= n
    finally:
        if fresh:
            await store.record_boost(fresh)
    return results, calls, calls > 0 and replayed_calls == calls
