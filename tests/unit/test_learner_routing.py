"""The gateway's learner routing without processes: which learner a request addresses, the
replicas read from real heartbeat records, and rendezvous hashing's stability when one leaves."""

from __future__ import annotations

from redis.asyncio import Redis

from services.web.learner_routing import LearnerRouter, learner_of
from shared.keys import Keys
from shared.replicas import ReplicaRecord, ReplicaRegistry


def test_the_learner_is_found_where_the_handler_finds_it() -> None:
    round_path = "/api/v1/training/round"
    assert learner_of(round_path, None, b'{"learner": "a-1"}') == "a-1"
    # The body wins over the query, as in learner_from.
    assert learner_of(round_path, "q-1", b'{"learner": "a-1"}') == "a-1"
    assert learner_of(round_path, "q-1", b'{"learner": null}') == "q-1"
    assert learner_of("/api/v1/training/status", "q-1", b"") == "q-1"
    assert learner_of("/api/v1/learners/l-7/history", None, b"") == "l-7"
    # A round without a learner is the default learner's.
    assert learner_of(round_path, None, b"") == "default"
    assert learner_of(round_path, None, b"not json") == "default"
    # A batch addresses many learners, a list none: any replica.
    assert learner_of("/api/v1/training/rounds", None, b'{"learners": ["a", "b"]}') is None
    assert learner_of("/api/v1/learners", None, b"") is None
    assert learner_of("/api/v1/next-domain", None, b"") is None


async def test_replicas_come_from_heartbeats_and_a_leaving_one_moves_only_its_learners(
    redis: Redis, keys: Keys
) -> None:
    for name, port in (("training#1", 4101), ("training#2", 4102), ("training#3", 4103)):
        record = ReplicaRecord(name, 1, "h", None, 0, api_url=f"http://127.0.0.1:{port}")
        await ReplicaRegistry(redis, keys, "training", record).beat()
    # A replica without a port of its own (a single process) is not routed to.
    await ReplicaRegistry(redis, keys, "training", ReplicaRecord("solo", 1, "h", None, 0)).beat()
    router = LearnerRouter(redis, keys)
    await router.refresh()
    assert [name for name, _ in router.replicas] == ["training#1", "training#2", "training#3"]

    learners = [f"l-{i}" for i in range(300)]
    home = {learner: router.candidates(learner)[0][0] for learner in learners}
    assert set(home.values()) == {"training#1", "training#2", "training#3"}
    assert all(router.candidates(learner)[0][0] == home[learner] for learner in learners)

    # training#2 refuses connections: its learners move, nobody else's does.
    router.mark_down("training#2")
    for learner in learners:
        moved = router.candidates(learner)[0][0]
        if home[learner] == "training#2":
            assert moved != "training#2"
        else:
            assert moved == home[learner]

    # Gone from the heartbeats: the same placement as while it was skipped.
    await redis.hdel(keys.replicas("training"), "training#2")
    skipped = {learner: router.candidates(learner)[0][0] for learner in learners}
    await router.refresh()
    assert {learner: router.candidates(learner)[0][0] for learner in learners} == skipped
