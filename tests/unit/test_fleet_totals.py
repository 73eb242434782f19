"""The fleet's figures are sums over the shards: learners, regions and rounds, the same through
the async and the synchronous client."""

from __future__ import annotations

import redis as sync_redis

from harness.redis_server import RedisServer
from shared import fleet_totals
from shared.keys import Keys
from shared.learner_state import LearnerState, encode
from shared.scripts import Scripts


async def test_totals_sum_every_shard(
    redis, scripts: Scripts, keys: Keys, redis_server: RedisServer
):
    regions = ["eu", "us", "ap"]
    learners = [f"n{i}" for i in range(50)]
    for i, learner in enumerate(learners):
        state = LearnerState(id=learner, seed=i, region=regions[i % 3], created=1.0, active=True)
        await scripts.create_learner(
            keys=keys.create_learner_keys(learner), args=[learner, encode(state), regions[i % 3], 1]
        )
    shards = {keys.shard_of(x) for x in learners}
    assert len(shards) > 8
    for n, shard in enumerate(sorted(shards)):
        await redis.set(keys.rounds_seq(shard), n + 1)
    await scripts.delete_learner(keys=keys.delete_learner_keys("n0"), args=["n0"])
    expected = fleet_totals.FleetTotals(
        learners=49,
        rounds=sum(range(1, len(shards) + 1)),
        regions={"eu": 16, "us": 17, "ap": 16},
    )
    assert await fleet_totals.read_totals(redis, keys) == expected
    assert await fleet_totals.learner_count(redis, keys) == 49
    assert await fleet_totals.rounds_total(redis, keys) == expected.rounds
    client = sync_redis.Redis.from_url(redis_server.url)  # bytes replies, as the harness reads
    try:
        assert fleet_totals.read_totals_sync(client, keys) == expected
        assert fleet_totals.learner_count_sync(client, keys) == 49
        assert fleet_totals.rounds_total_sync(client, keys) == expected.rounds
    finally:
        client.close()


async def test_an_empty_fleet_sums_to_zero(redis, keys: Keys):
    assert await fleet_totals.read_totals(redis, keys) == fleet_totals.FleetTotals()
