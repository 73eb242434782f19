"""Reports consumers that split the shards, against a real redis-server: ownership given by
hand-made `ShardOwnership`s and changed while they run (a shard lost is no longer read, a shard
gained has its pending entries claimed first), and every count stays exactly once: reports'
total equals the sum of the shards' round counters, with nothing left pending."""

from __future__ import annotations

import asyncio
import random
import time

from redis.asyncio import Redis

from services.reports import queries
from services.reports.apply import GROUP
from services.reports.consumer import ReportsConsumer, StreamTrimmer, ensure_groups
from shared.fleet_totals import rounds_total
from shared.keys import Keys


class HandOwnership:
    """A ShardOwnership whose shards a test sets."""

    def __init__(self, shards: set[int]) -> None:
        self.shards = set(shards)

    def owned(self) -> frozenset[int]:
        return frozenset(self.shards)

    def token(self, shard: int) -> int | None:
        return None


async def add_rounds(redis: Redis, keys: Keys, shard: int, n: int) -> None:
    """n round events on the shard's stream, and its round counter moved on by n, in one
    MULTI (one slot), as the commit script writes them."""
    now = int(time.time() * 1000)
    async with redis.pipeline(transaction=True) as pipe:
        for i in range(n):
            pipe.xadd(
                keys.stream_rounds(shard),
                {"round": i, "learner": f"l{shard}", "region": "eu", "ts": now, "ms": 5},
            )
        pipe.incrby(keys.rounds_seq(shard), n)
        await pipe.execute()


async def counted(redis: Redis, keys: Keys) -> int:
    """Reports' rounds total as its status answers it (the shards' totals summed)."""
    return int((await queries.fleet_totals(redis, keys)).get("rounds", 0))


async def pending(redis: Redis, keys: Keys) -> int:
    async with redis.pipeline(transaction=False) as pipe:
        for shard in keys.all_shards():
            pipe.xpending(keys.stream_rounds(shard), GROUP)
        return sum(int(p["pending"]) for p in await pipe.execute())


async def test_two_consumers_split_the_shards_and_count_each_round_once(
    redis: Redis, keys: Keys
) -> None:
    await ensure_groups(redis, keys)
    half = keys.shards // 2
    own_a, own_b = HandOwnership(set(range(half))), HandOwnership(set(range(half, keys.shards)))
    a = ReportsConsumer(redis, keys, "a", own_a)
    b = ReportsConsumer(redis, keys, "b", own_b)
    for shard in keys.all_shards():
        await add_rounds(redis, keys, shard, 10)
    assert await a.drain() == 10 * half
    assert await b.drain() == 10 * (keys.shards - half)
    # Each read only its own shards.
    assert a.state.owned == frozenset(range(half))
    assert await redis.hget(keys.reports_totals(half), "rounds") == "10"

    # a read 3 rounds of shard 0 and stalls before applying them; shard 0 moves to b.
    await add_rounds(redis, keys, 0, 5)
    stalled = await redis.xreadgroup(GROUP, "a", {keys.stream_rounds(0): ">"}, count=3)
    assert len(stalled[0][1]) == 3
    own_a.shards.discard(0)
    own_b.shards.add(0)
    await add_rounds(redis, keys, 0, 4)
    # b claims the 3 pending entries from the group before it reads the 6 new ones.
    assert await b.run_once() == 3
    assert b.state.claimed == 3
    assert await b.drain() == 6
    # a no longer reads shard 0; when it wakes up, nothing of shard 0 is counted twice.
    assert await a.drain() == 0
    assert int(await redis.hget(keys.reports_totals(0), "rounds") or 0) == 19
    assert await counted(redis, keys) == await rounds_total(redis, keys)
    assert await pending(redis, keys) == 0


async def test_a_stalled_owner_that_applies_after_the_handover_counts_nothing_twice(
    redis: Redis, keys: Keys
) -> None:
    """Both believe they own shard 2 for a moment (a lease lost during a stall): whichever
    applies an entry first counts it; the other's apply of the same entry is skipped."""
    await ensure_groups(redis, keys)
    old, new = HandOwnership({2}), HandOwnership(set())
    a = ReportsConsumer(redis, keys, "a", old)
    b = ReportsConsumer(redis, keys, "b", new)
    await a.run_once()
    await add_rounds(redis, keys, 2, 8)
    read = await redis.xreadgroup(GROUP, "a", {keys.stream_rounds(2): ">"}, count=8)
    new.shards.add(2)
    assert await b.drain() == 8  # claimed and applied
    # a's late apply of what it had read: every entry already acknowledged, all skipped.
    applied = await a._apply({keys.stream_rounds(2): read[0][1]})
    assert (applied[0].applied, applied[0].skipped) == (0, 8)
    assert await redis.hget(keys.reports_totals(2), "rounds") == "8"


async def test_ownership_moving_while_rounds_flow_keeps_every_count_exactly_once(
    redis: Redis, keys: Keys
) -> None:
    await ensure_groups(redis, keys)
    rng = random.Random(14)
    owners = [HandOwnership(set()), HandOwnership(set())]
    for shard in keys.all_shards():
        owners[shard % 2].shards.add(shard)
    consumers = [
        ReportsConsumer(redis, keys, name, own, idle_s=0.005)
        for name, own in zip(("a", "b"), owners, strict=True)
    ]
    tasks = [asyncio.create_task(c.run()) for c in consumers]
    try:
        for _ in range(40):  # bounded: 40 steps of writes and moves
            for _ in range(4):
                await add_rounds(redis, keys, rng.randrange(keys.shards), rng.randint(1, 20))
            # Move a few shards from one consumer to the other; sometimes a shard is owned by
            # both for a step (a handover overlap) or by nobody (a gap before a takeover).
            for shard in rng.sample(range(keys.shards), 3):
                giver, taker = rng.sample(owners, 2)
                roll = rng.random()
                if roll < 0.7:
                    giver.shards.discard(shard)
                    taker.shards.add(shard)
                elif roll < 0.85:
                    taker.shards.add(shard)
                else:
                    giver.shards.discard(shard)
                    taker.shards.discard(shard)
            await asyncio.sleep(0.01)
        # Every shard owned by exactly one consumer again, and the readers catch up.
        for shard in keys.all_shards():
            owners[0].shards.discard(shard)
            owners[1].shards.discard(shard)
            owners[shard % 2].shards.add(shard)
        committed = await rounds_total(redis, keys)
        for _ in range(1500):  # bounded wait: up to ~15 s on a busy machine
            if await counted(redis, keys) >= committed and await pending(redis, keys) == 0:
                break
            await asyncio.sleep(0.01)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(c.state.last_error is None for c in consumers)
    assert await counted(redis, keys) == committed
    assert (await queries.status(redis, keys))["rounds_total"] == committed
    assert await pending(redis, keys) == 0
    for shard in keys.all_shards():
        seq = int(await redis.get(keys.rounds_seq(shard)) or 0)
        assert int(await redis.hget(keys.reports_totals(shard), "rounds") or 0) == seq, shard
    assert sum(c.state.applied for c in consumers) == committed


async def test_a_cancelled_consumer_and_trimmer_stop(redis: Redis, keys: Keys) -> None:
    """Failed before: a cancellation that arrived during a Redis command was lost in the client
    (the command returned as if nothing happened) and the loop went round again for ever."""
    await ensure_groups(redis, keys)
    rng = random.Random(3)
    for i in range(30):  # bounded
        consumer = ReportsConsumer(redis, keys, f"c{i}", idle_s=0.001)
        trimmer = StreamTrimmer(redis, keys, cap=10)
        tasks = [asyncio.create_task(consumer.run()), asyncio.create_task(trimmer.run(0.001))]
        await asyncio.sleep(rng.uniform(0.001, 0.02))
        for task in tasks:
            task.cancel()
        done, _ = await asyncio.wait(tasks, timeout=5)
        assert len(done) == 2, f"still running after cancel (round {i})"
        assert all(t.cancelled() for t in tasks)
        assert not consumer.state.running
