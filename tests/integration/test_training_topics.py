"""Topics added at run time, against a real training process: adding them does not un-ready a
trained learner, they are bounded (TOOLOO_MAX_TOPICS), and one added at run time can be deleted
while a built-in one cannot."""

from __future__ import annotations

from typing import Any

import pytest

from harness.fleet import Fleet
from harness.processes import ServiceProcess

pytestmark = pytest.mark.integration

NEW_TOPIC = "/api/v1/training/new-topic"
ROUNDS = "/api/v1/training/rounds"


@pytest.fixture
def training(fleet: Fleet) -> ServiceProcess:
    """Training alone, with room for the dozens of new-topic calls these tests make (its default
    rate limit is 10 a minute per client)."""
    fleet.start("training", env={"TOOLOO_RATE_LIMITS": "training-new-topic=1000/60"})
    return fleet["training"]


def _topic(key: str, background: bool = True) -> dict[str, Any]:
    return {
        "key": key,
        "name": f"Topic {key}",
        "background": background,
        "problems": [{"problem": f"Explain {key}", "keywords": [key, "because"]}],
    }


def _train_until_ready(training: ServiceProcess, learner: str) -> None:
    training.post("/api/v1/training/start", {"learner": learner})
    for _ in range(40):  # bounded: a learner is ready after a few hundred rounds
        status, body = training.post(ROUNDS, {"learners": [learner], "rounds_per_learner": 50})
        assert status == 200, body
        if body["rounds"][-1]["ready"]:
            return
    raise AssertionError(f"{learner} never became ready")


def test_a_ready_learner_stays_ready_after_topics_are_added(training: ServiceProcess):
    _train_until_ready(training, "trained")
    before = training.get("/api/v1/learners/trained")[1]["learner"]
    assert before["ready"] is True

    # Forty topics, as in the review (they dropped the average from 99.6 to 18.3): background
    # ones, the new-topic default.
    for i in range(40):
        status, body = training.post(NEW_TOPIC, _topic(f"extra{i}"))
        assert status == 200, body
    after = training.get("/api/v1/learners/trained")[1]["learner"]
    assert after["average"] == pytest.approx(before["average"], abs=1.0)
    assert after["below"] == before["below"]
    # The next rounds decide readiness again (one in three practises a background topic): the
    # learner stays ready.
    status, body = training.post(ROUNDS, {"learners": ["trained"], "rounds_per_learner": 6})
    assert status == 200 and body["rounds"][-1]["ready"] is True, body["rounds"][-1]

    mid = training.get("/api/v1/learners/trained")[1]["learner"]

    # Target topics too: not practised yet, so they do not count yet.
    for i in range(5):
        status, body = training.post(NEW_TOPIC, _topic(f"target{i}", background=False))
        assert status == 200, body
    later = training.get("/api/v1/learners/trained")[1]["learner"]
    assert later["average"] == pytest.approx(mid["average"], abs=1.0)
    assert later["below"] == mid["below"]
    learners = training.get("/api/v1/learners?limit=500")[1]["learners"]
    assert next(x for x in learners if x["id"] == "trained")["ready"] is True


def test_topics_are_bounded_and_only_run_time_ones_can_be_deleted(fleet: Fleet):
    fleet.start("training", env={"TOOLOO_MAX_TOPICS": "11"})
    training = fleet["training"]
    assert training.post(NEW_TOPIC, _topic("one"))[0] == 200
    assert training.post(NEW_TOPIC, _topic("two"))[0] == 200
    status, body = training.post(NEW_TOPIC, _topic("three"))
    assert status == 409 and body["error"]["code"] == "too_many_topics"
    # Replacing an existing topic is not a new one: allowed at the bound.
    assert training.post(NEW_TOPIC, {**_topic("two"), "force": True})[0] == 200

    status, body = training.delete("/api/v1/training/topics/dsa")
    assert status == 409 and body["error"]["code"] == "builtin_topic"
    status, body = training.delete("/api/v1/training/topics/nothing")
    assert status == 404 and body["ok"] is False
    status, body = training.delete("/api/v1/training/topics/one")
    assert status == 200 and body["deleted"] == "one"
    topics = [d["topic"] for d in training.get("/api/v1/training/overview")[1]["data"]["domains"]]
    assert "one" not in topics and "dsa" in topics and "two" in topics
    assert training.post(NEW_TOPIC, _topic("three"))[0] == 200  # room again

    # Rounds go on without the deleted topic, for a learner that had practised it.
    training.post("/api/v1/training/start", {"learner": "after-delete"})
    status, body = training.post(ROUNDS, {"learners": ["after-delete"], "rounds_per_learner": 9})
    assert status == 200 and body["committed"] == 9
    assert training.delete("/api/v1/training/topics/three")[0] == 200
    status, body = training.post(ROUNDS, {"learners": ["after-delete"], "rounds_per_learner": 9})
    assert status == 200 and body["committed"] == 9
