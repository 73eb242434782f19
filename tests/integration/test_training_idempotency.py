"""Idempotency-Key on training's round endpoints, against a real training process: a retry with
the same key commits nothing and answers the first commit's ids; the key with another body is
refused (422) before anything is committed; a malformed key is refused (400)."""

from __future__ import annotations

from typing import Any

import pytest
import redis as sync_redis

from harness.processes import ServiceProcess
from shared import history
from shared.fleet_totals import rounds_total_sync
from shared.keys import Keys

pytestmark = pytest.mark.integration

ROUND = "/api/v1/training/round"
ROUNDS = "/api/v1/training/rounds"


def _counters(training: ServiceProcess, keys: Keys, learner: str) -> tuple[Any, ...]:
    r = sync_redis.Redis.from_url(training.env["REDIS_URL"], decode_responses=True)
    try:
        shard = keys.shard_of(learner)
        return (
            rounds_total_sync(r, keys),
            r.hget(keys.learner_state(learner), "v"),
            len(history.decode(r.get(keys.learner_history(learner)))),
            r.xlen(keys.stream_rounds(shard)),
        )
    finally:
        r.close()


def _key(name: str) -> dict[str, str]:
    return {"Idempotency-Key": f"test-{name}-0001"}


def test_round_retried_with_the_same_key_commits_once(training: ServiceProcess, keys: Keys):
    training.post("/api/v1/training/start", {"learner": "idem-a"})
    status, first = training.post(ROUND, {"learner": "idem-a"}, headers=_key("one"))
    assert status == 200 and "replayed" not in first["result"]
    after_first = _counters(training, keys, "idem-a")

    status, again = training.post(ROUND, {"learner": "idem-a"}, headers=_key("one"))
    assert status == 200, again
    assert again["result"]["replayed"] is True
    assert again["result"]["round"] == first["result"]["round"]
    assert again["result"]["learner"] == "idem-a"
    assert again["result"]["version"] == int(after_first[1])
    assert _counters(training, keys, "idem-a") == after_first  # nothing committed

    history = training.get("/api/v1/training/history?learner=idem-a&limit=10")[1]["history"]
    assert [h["round"] for h in history] == [first["result"]["round"]]

    # A new key is a new round.
    status, other = training.post(ROUND, {"learner": "idem-a"}, headers=_key("two"))
    assert status == 200 and other["result"]["round"] > first["result"]["round"]


def test_same_key_with_another_body_is_refused_and_commits_nothing(
    training: ServiceProcess, keys: Keys
):
    for learner in ("idem-b", "idem-c"):
        training.post("/api/v1/training/start", {"learner": learner})
    assert training.post(ROUND, {"learner": "idem-b"}, headers=_key("body"))[0] == 200
    before = [_counters(training, keys, x) for x in ("idem-b", "idem-c")]

    status, body = training.post(ROUND, {"learner": "idem-c"}, headers=_key("body"))
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    status, body = training.post(
        ROUNDS, {"learners": ["idem-b"], "rounds_per_learner": 1}, headers=_key("body")
    )
    assert status == 422 and body["error"]["code"] == "idempotency_key_reused"
    assert [_counters(training, keys, x) for x in ("idem-b", "idem-c")] == before

    for bad in ("short", "has space in it", "x" * 129, "brace{tag}key"):
        status, body = training.post(ROUND, {"learner": "idem-b"}, headers={"Idempotency-Key": bad})
        assert status == 400 and body["error"]["code"] == "invalid_idempotency_key", bad
    assert [_counters(training, keys, x) for x in ("idem-b", "idem-c")] == before


def test_batch_retried_with_the_same_key_commits_once(training: ServiceProcess, keys: Keys):
    learners = ["idem-d", "idem-e"]
    for learner in learners:
        training.post("/api/v1/training/start", {"learner": learner})
    call = {"learners": learners, "rounds_per_learner": 3}
    status, first = training.post(ROUNDS, call, headers=_key("batch"))
    assert status == 200 and first["committed"] == 6 and first["replayed"] is False
    after_first = [_counters(training, keys, x) for x in learners]

    status, again = training.post(ROUNDS, call, headers=_key("batch"))
    assert status == 200 and again["replayed"] is True, again
    assert [(r["round"], r["learner"]) for r in again["rounds"]] == [
        (r["round"], r["learner"]) for r in first["rounds"]
    ]
    assert all(r["replayed"] for r in again["rounds"])
    assert [_counters(training, keys, x) for x in learners] == after_first
