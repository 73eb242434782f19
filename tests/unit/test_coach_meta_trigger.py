"""How the coach cuts one read of readiness events into meta run-batch calls."""

from __future__ import annotations

from typing import Any

from services.coach.lease import Lease
from services.coach.meta_trigger import MetaTrigger, batches_of
from services.coach.store import META_GROUP as GROUP
from services.coach.store import CoachStore
from shared.events import ReadyEvent


def entries(*learners: str) -> list[tuple[str, ReadyEvent]]:
    return [(f"{i}-0", ReadyEvent(learner=x)) for i, x in enumerate(learners)]


def ids(batches: list[list[tuple[str, ReadyEvent]]]) -> list[list[str]]:
    return [[entry_id for entry_id, _ in batch] for batch in batches]


def test_batches_keep_read_order_and_size():
    assert ids(batches_of(entries("a", "b", "c", "d", "e"), 2)) == [
        ["0-0", "1-0"],
        ["2-0", "3-0"],
        ["4-0"],
    ]
    assert batches_of([], 10) == []


def test_a_learner_ready_twice_in_one_read_goes_to_a_later_batch():
    # meta's run-batch takes each learner once; the second event is still served, after.
    got = batches_of(entries("a", "b", "a", "c", "a"), 10)
    assert ids(got) == [["0-0", "1-0", "3-0"], ["2-0"], ["4-0"]]
    for batch in got:
        learners = [event.learner for _, event in batch]
        assert len(learners) == len(set(learners))


class UnusedMeta:
    """A meta that must not be called."""

    async def run_batch(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        raise AssertionError("meta called")

    async def run_all(self, learner: str, trigger: dict[str, int]) -> tuple[int, Any]:
        raise AssertionError("meta called")


async def test_prune_drops_only_idle_consumers_with_nothing_pending(redis, scripts, keys):
    trigger = MetaTrigger(
        CoachStore(redis, keys),
        UnusedMeta(),
        Lease(redis, keys, scripts),
        consumer="me",
        prune_idle_ms=0,
    )
    await trigger.ensure_group()
    await redis.xadd(keys.stream_meta, {"type": "ready", "learner": "a"})
    await redis.xadd(keys.stream_meta, {"type": "ready", "learner": "b"})
    await redis.xadd(keys.stream_meta, {"type": "ready", "learner": "c"})
    # An old coach that served its entry (acked), and a dead one that still owes one.
    (_, [(first, _)]), *_ = await redis.xreadgroup(GROUP, "old", {keys.stream_meta: ">"}, count=1)
    await redis.xack(keys.stream_meta, GROUP, first)
    await redis.xreadgroup(GROUP, "dead", {keys.stream_meta: ">"}, count=1)
    await redis.xreadgroup(GROUP, "me", {keys.stream_meta: ">"}, count=1)

    assert await trigger.prune_consumers() == 1
    names = {c["name"] for c in await redis.xinfo_consumers(keys.stream_meta, GROUP)}
    assert names == {"me", "dead"}  # "dead"'s entry stays pending until it is claimed
    assert (await redis.xpending(keys.stream_meta, GROUP))["pending"] == 2


class ScriptedMeta:
    """Answers every run-batch with `status` (and one 200 result per item when it is 200)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.batches: list[list[dict[str, Any]]] = []

    async def run_batch(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        self.batches.append(items)
        if self.status != 200:
            return self.status, {"ok": False, "error": {"code": "paused", "message": "paused"}}
        return 200, {"results": [{"status": 200, "delay_ms": 4.25} for _ in items]}

    async def run_all(self, learner: str, trigger: dict[str, int]) -> tuple[int, Any]:
        raise AssertionError("a batch was refused")


async def serve(redis, scripts, keys, meta: ScriptedMeta) -> MetaTrigger:
    trigger = MetaTrigger(CoachStore(redis, keys), meta, Lease(redis, keys, scripts), consumer="c")
    await trigger.ensure_group()
    for learner, round_id in (("a", 1), ("b", 2)):
        await redis.xadd(
            keys.stream_meta, {"type": "ready", "learner": learner, "round": round_id, "ts": 1}
        )
    await redis.xadd(keys.stream_meta, {"type": "completed", "learner": "a"})
    assert await trigger.read_once() == 2
    assert await trigger.wait_backlog_below(1, 2.0)
    return trigger


async def test_served_triggers_are_recorded_and_acknowledged(redis, scripts, keys):
    meta = ScriptedMeta()
    await serve(redis, scripts, keys, meta)
    assert [[item["learner"] for item in batch] for batch in meta.batches] == [["a", "b"]]
    assert meta.batches[0][0]["trigger"] == {"round": 1, "ts": 1}
    assert await redis.lrange(keys.coach_meta_delays, 0, -1) == ["4.25", "4.25"]
    assert await redis.hgetall(keys.coach_meta_delay_by_learner) == {"a": "4.25", "b": "4.25"}
    assert await redis.hget(keys.coach_stats, "metaTriggers") == "2"
    assert (await redis.xpending(keys.stream_meta, GROUP))["pending"] == 0
    action = await redis.hget(keys.coach_state, "lastMetaAction")
    assert action == (
        "meta-learning phases completed for b (4.2 ms after round 2) and 1 more learners"
    )


async def test_paused_meta_keeps_the_triggers_pending(redis, scripts, keys):
    await redis.hset(keys.coach_state, "outage.meta", "{}")
    await serve(redis, scripts, keys, ScriptedMeta(409))
    assert (await redis.xpending(keys.stream_meta, GROUP))["pending"] == 2  # ready ones only
    assert await redis.hget(keys.coach_state, "lastMetaAction") == (
        "meta paused: 2 triggers kept queued"
    )
    assert await redis.llen(keys.coach_meta_delays) == 0
    assert await redis.hget(keys.coach_state, "outage.meta") == "{}"  # not served: not over
