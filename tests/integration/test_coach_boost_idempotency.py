"""Boost with an Idempotency-Key, against real training and coach processes: a retry commits no
extra rounds and answers the same round ids; the key with another body is refused (422)."""

from __future__ import annotations

import pytest

from harness.fleet import Fleet
from tests.integration.test_coach import rounds_total

pytestmark = pytest.mark.integration

COACH = "/api/v1/auto-coach"


def _history_rounds(fleet: Fleet, learner: str) -> list[int]:
    path = f"/api/v1/training/history?learner={learner}&limit=100"
    return [h["round"] for h in fleet["training"].get(path)[1]["history"]]


async def test_boost_retried_with_a_key_adds_no_rounds(fleet: Fleet, redis, keys):
    fleet.start("training", "coach")
    for learner in ("k1", "k2"):
        assert fleet["training"].post("/api/v1/learners", {"id": learner})[0] == 201
    key = {"Idempotency-Key": "boost-test-key-1"}
    boost = {"learner": "k1", "rounds": 7, "batchSize": 3}

    code, first = fleet["coach"].post(f"{COACH}/boost", boost, headers=key)
    assert code == 200 and first["boosted"] == 7 and first["replayed"] is False, first
    seq = await rounds_total(redis, keys)
    history = _history_rounds(fleet, "k1")
    assert len(history) == 7

    code, again = fleet["coach"].post(f"{COACH}/boost", boost, headers=key)
    assert code == 200 and again["replayed"] is True, again
    assert [r["round"] for r in again["results"]] == [r["round"] for r in first["results"]]
    assert await rounds_total(redis, keys) == seq
    assert _history_rounds(fleet, "k1") == history

    # The same key for another boost (another learner, or more rounds): refused, nothing run.
    for other in ({**boost, "learner": "k2"}, {**boost, "rounds": 9}):
        code, body = fleet["coach"].post(f"{COACH}/boost", other, headers=key)
        assert code == 422 and body["error"]["code"] == "idempotency_key_reused", body
    code, body = fleet["coach"].post(f"{COACH}/hyper-boost", boost, headers=key)
    assert code == 422, body
    assert await rounds_total(redis, keys) == seq
    assert _history_rounds(fleet, "k2") == []

    code, body = fleet["coach"].post(f"{COACH}/boost", boost, headers={"Idempotency-Key": "bad"})
    assert code == 400 and body["error"]["code"] == "invalid_idempotency_key"


async def test_a_boost_that_failed_half_way_completes_on_retry(fleet: Fleet, redis, keys):
    """The first attempt commits its first call, then fails (the learner is stopped); the retry
    replays that call and commits only the rest: 7 rounds in all, not 7 + 3."""
    fleet.start("training", "coach")
    assert fleet["training"].post("/api/v1/learners", {"id": "h1"})[0] == 201
    key = {"Idempotency-Key": "boost-test-key-2"}
    boost = {"learner": "h1", "rounds": 7, "batchSize": 3}
    # Commit the first call of the boost by hand, as the first attempt would have, with the key
    # the coach derives for it, then lose the rest of that attempt.
    from services.coach.boost import call_key

    code, body = fleet["training"].post(
        "/api/v1/training/rounds",
        {"learners": ["h1"], "rounds_per_learner": 3},
        headers={"Idempotency-Key": call_key("boost-test-key-2", 1)},
    )
    assert code == 200 and body["committed"] == 3
    first_ids = [r["round"] for r in body["rounds"]]

    code, body = fleet["coach"].post(f"{COACH}/boost", boost, headers=key)
    assert code == 200 and body["boosted"] == 7 and body["replayed"] is False, body
    assert [r["round"] for r in body["results"]][:3] == first_ids
    assert len(_history_rounds(fleet, "h1")) == 7
