"""How the coach cuts one read of readiness events into meta run-batch calls."""

from __future__ import annotations

import asyncio
from typing import Any

from services.coach.meta_trigger import Entry, MetaTrigger, batches_of
from services.coach.store import META_GROUP as GROUP
from services.coach.store import CoachStore
from shared.events import ReadyEvent
from shared.shards import AllShards

SHARD = 5


def entries(*learners: str) -> list[Entry]:
    return [(SHARD, f"{i}-0", ReadyEvent(learner=x)) for i, x in enumerate(learners)]


def ids(batches: list[list[Entry]]) -> list[list[str]]:
    return [[entry_id for _, entry_id, _ in batch] for batch in batches]


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
        learners = [event.learner for _, _, event in batch]
        assert len(learners) == len(set(learners))


class UnusedMeta:
    """A meta that must not be called."""

    async def run_batch(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        raise AssertionError("meta called")

    async def run_all(self, learner: str, trigger: dict[str, int]) -> tuple[int, Any]:
        raise AssertionError("meta called")


async def test_prune_drops_only_idle_consumers_with_nothing_pending(redis, scripts, keys):
    store = CoachStore(redis, keys)
    trigger = MetaTrigger(store, UnusedMeta(), AllShards(keys), consumer="me", prune_idle_ms=0)
    stream = keys.stream_meta(SHARD)
    await store.ensure_meta_group(SHARD)
    await redis.xadd(stream, {"type": "ready", "learner": "a"})
    await redis.xadd(stream, {"type": "ready", "learner": "b"})
    await redis.xadd(stream, {"type": "ready", "learner": "c"})
    # An old coach that served its entry (acked), and a dead one that still owes one.
    (_, [(first, _)]), *_ = await redis.xreadgroup(GROUP, "old", {stream: ">"}, count=1)
    await redis.xack(stream, GROUP, first)
    await redis.xreadgroup(GROUP, "dead", {stream: ">"}, count=1)
    await redis.xreadgroup(GROUP, "me", {stream: ">"}, count=1)

    assert await trigger.prune_consumers(SHARD) == 1
    names = {c["name"] for c in await redis.xinfo_consumers(stream, GROUP)}
    assert names == {"me", "dead"}  # "dead"'s entry stays pending until it is claimed
    assert (await redis.xpending(stream, GROUP))["pending"] == 2


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
    store = CoachStore(redis, keys)
    trigger = MetaTrigger(store, meta, AllShards(keys), consumer="c")
    await store.ensure_meta_group(SHARD)
    for learner, round_id in (("a", 1), ("b", 2)):
        await redis.xadd(
            keys.stream_meta(SHARD),
            {"type": "ready", "learner": learner, "round": round_id, "ts": 1},
        )
    await redis.xadd(keys.stream_meta(SHARD), {"type": "completed", "learner": "a"})
    assert await trigger.read_once(SHARD) == 2
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
    assert (await redis.xpending(keys.stream_meta(SHARD), GROUP))["pending"] == 0
    action = await redis.hget(keys.coach_state, "lastMetaAction")
    assert action == (
        "meta-learning phases completed for b (4.2 ms after round 2) and 1 more learners"
    )


async def test_paused_meta_keeps_the_triggers_pending(redis, scripts, keys):
    await redis.hset(keys.coach_state, "outage.meta", "{}")
    await serve(redis, scripts, keys, ScriptedMeta(409))
    assert (await redis.xpending(keys.stream_meta(SHARD), GROUP))["pending"] == 2  # ready ones only
    assert await redis.hget(keys.coach_state, "lastMetaAction") == (
        "meta paused: 2 triggers kept queued"
    )
    assert await redis.llen(keys.coach_meta_delays) == 0
    assert await redis.hget(keys.coach_state, "outage.meta") == "{}"  # not served: not over


async def test_a_gained_shard_claims_what_its_previous_owner_left_pending(redis, scripts, keys):
    """A replica that gains a shard serves the entries the previous owner read and never
    acknowledged (it died) at once, without waiting for them to go idle."""
    store = CoachStore(redis, keys)
    stream = keys.stream_meta(SHARD)
    await store.ensure_meta_group(SHARD)
    for learner, round_id in (("a", 1), ("b", 2)):
        await redis.xadd(stream, {"type": "ready", "learner": learner, "round": round_id, "ts": 1})
    await redis.xreadgroup(GROUP, "dead-owner", {stream: ">"}, count=10)
    meta = ScriptedMeta()
    trigger = MetaTrigger(store, meta, AllShards(keys), consumer="new-owner", claim_idle_ms=60_000)
    reader = asyncio.create_task(trigger.read_shard(SHARD))
    try:
        for _ in range(200):  # bounded wait for the claim and the meta call
            if (await redis.xpending(stream, GROUP))["pending"] == 0:
                break
            await asyncio.sleep(0.01)
        assert (await redis.xpending(stream, GROUP))["pending"] == 0
        assert [[item["learner"] for item in batch] for batch in meta.batches] == [["a", "b"]]
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


class HeldMeta(ScriptedMeta):
    """Answers 200 like ScriptedMeta, each call only once the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.go = asyncio.Event()

    async def run_batch(self, items: list[dict[str, Any]]) -> tuple[int, Any]:
        self.batches.append(items)
        await self.go.wait()
        return 200, {"results": [{"status": 200, "delay_ms": 1.0} for _ in items]}


async def test_entries_read_while_every_call_is_taken_leave_together_across_shards(
    redis, scripts, keys
):
    """A readiness wave spread over the shards' streams: what the readers read while meta's
    calls are all in flight waits in one queue and goes in the next call together, whatever its
    shard, instead of one small call per read waiting for a slot."""
    store = CoachStore(redis, keys)
    meta = HeldMeta()
    trigger = MetaTrigger(store, meta, AllShards(keys), consumer="c", concurrency=1)
    other = SHARD + 1
    for shard in (SHARD, other):
        await store.ensure_meta_group(shard)

    async def ready(shard: int, learner: str, round_id: int) -> None:
        fields = {"type": "ready", "learner": learner, "round": round_id, "ts": 1}
        await redis.xadd(keys.stream_meta(shard), fields)

    await ready(SHARD, "a", 1)
    assert await trigger.read_once(SHARD) == 1  # a free slot: sent at once, alone
    await ready(other, "b", 2)
    await ready(other, "c", 3)
    await ready(SHARD, "d", 4)
    await ready(SHARD, "a", 5)  # ready again, while its first trigger is in the call
    assert await trigger.read_once(other) == 2
    assert await trigger.read_once(SHARD) == 2
    assert not await trigger.wait_backlog_below(1, 0.05)  # five waiting or in flight
    meta.go.set()
    assert await trigger.wait_backlog_below(1, 2.0)
    learners = [[item["learner"] for item in batch] for batch in meta.batches]
    assert learners == [["a"], ["b", "c", "d", "a"]]
    for shard in (SHARD, other):
        assert (await redis.xpending(keys.stream_meta(shard), GROUP))["pending"] == 0
    assert await redis.hget(keys.coach_stats, "metaTriggers") == "5"
