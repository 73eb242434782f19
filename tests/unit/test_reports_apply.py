"""The reports consumer and its atomic apply step against a real redis-server."""

from __future__ import annotations

import time

import pytest
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from services.reports import queries
from services.reports.apply import GROUP, apply_entries, apply_script
from services.reports.consumer import ReportsConsumer, ensure_groups
from shared.events import emit_system_event, shard_streams
from shared.fleet_totals import rounds_total
from shared.keys import Keys


@pytest.fixture
def script(redis: Redis) -> AsyncScript:
    """The reports' own apply script, registered as the consumer registers it."""
    return apply_script(redis)


async def add_rounds(redis: Redis, keys: Keys, n: int, start: int = 1, shard: int = 0) -> None:
    """n round events on the shard's stream, and its round counter moved on by n, as the
    commit script does."""
    now = int(time.time() * 1000)
    for i in range(start, start + n):
        await redis.xadd(
            keys.stream_rounds(shard),
            {
                "round": i,
                "learner": f"l{i % 3}",
                "region": "eu",
                "ts": now,
                "ms": 10 + i,
                "avg": 50,
            },
        )
    await redis.incrby(keys.rounds_seq(shard), n)


async def test_applying_the_same_entries_twice_counts_them_once(
    redis: Redis, script: AsyncScript, keys: Keys
) -> None:
    await ensure_groups(redis, keys)
    await add_rounds(redis, keys, 5, shard=3)
    rounds = shard_streams(keys, 3)[0]
    reply = await redis.xreadgroup(GROUP, "c1", {rounds.key: ">"}, count=100)
    entries = reply[0][1]
    first = await apply_entries(script, keys, rounds, entries)
    again = await apply_entries(script, keys, rounds, entries)
    assert (first.applied, first.skipped) == (5, 0)
    assert (again.applied, again.skipped) == (0, 5)
    totals = await redis.hgetall(keys.reports_totals(3))
    assert totals["rounds"] == "5" and totals["events"] == "5"
    # applied and acknowledged in the same step: nothing is left pending
    assert (await redis.xpending(rounds.key, GROUP))["pending"] == 0
    minute = int(entries[0][0].split("-")[0]) // 60000
    fields = await redis.hgetall(keys.reports_minute(3, minute))
    assert fields["rounds"] == "5" and fields["lat_n"] == "5"
    assert 0 < await redis.ttl(keys.reports_minute(3, minute))
    assert not await redis.exists(keys.reports_totals(0))  # another shard's counters: untouched


async def test_redelivery_after_a_crash_between_read_and_ack(
    redis: Redis, script: AsyncScript, keys: Keys
) -> None:
    """A consumer read entries and died before applying; its restarted incarnation re-reads
    them as pending, applies them once; a stale copy delivered elsewhere is then skipped."""
    await ensure_groups(redis, keys)
    await add_rounds(redis, keys, 7, shard=5)
    rounds = shard_streams(keys, 5)[0]
    crashed = await redis.xreadgroup(GROUP, "same", {rounds.key: ">"}, count=4)
    assert len(crashed[0][1]) == 4  # read, never applied
    consumer = ReportsConsumer(redis, keys, "same")
    assert await consumer.drain() == 7
    late = await apply_entries(script, keys, rounds, crashed[0][1])
    assert late.applied == 0
    assert (await redis.hgetall(keys.reports_totals(5)))["rounds"] == "7"


async def test_stale_entries_of_another_consumer_are_claimed_and_counted(
    redis: Redis, keys: Keys
) -> None:
    await ensure_groups(redis, keys)
    consumer = ReportsConsumer(redis, keys, "me")
    assert await consumer.drain() == 0  # owns its shards from now on
    await add_rounds(redis, keys, 3, shard=1)
    # Another consumer of the group (an instance under another name) took two and died.
    await redis.xreadgroup(GROUP, "dead-replica", {keys.stream_rounds(1): ">"}, count=2)
    assert await consumer.drain() == 1  # only the undelivered entry
    assert await consumer.claim_stale(min_idle_ms=0) == 2
    assert await consumer.drain() == 2  # older than the applied one, counted all the same
    assert (await redis.hgetall(keys.reports_totals(1)))["rounds"] == "3"


async def test_consumer_catches_up_on_history_of_every_shard(redis: Redis, keys: Keys) -> None:
    for shard in keys.all_shards():  # before the groups exist
        await add_rounds(redis, keys, 150 + shard, shard=shard)
    await redis.xadd(keys.stream_meta(4), {"type": "ready", "learner": "a", "round": 3, "ts": 1})
    await redis.xadd(
        keys.stream_meta(4),
        {"type": "completed", "learner": "a", "round": 3, "delay_ms": 42, "ts": 2},
    )
    committed = await rounds_total(redis, keys)
    assert committed == sum(150 + s for s in keys.all_shards())
    consumer = ReportsConsumer(redis, keys, "me")
    await ensure_groups(redis, keys)
    assert await consumer.drain() == committed + 2
    m = await queries.metrics(redis, keys, 300, int(time.time() * 1000))
    assert m["rounds_total"] == committed  # the sum of the shards' round counters
    # A round's compute time; round_latency_ms is the round endpoints' request latency.
    assert m["round_compute_ms"]["count"] == committed
    assert m["meta_trigger_delay_ms"]["count"] == 1
    assert 42 <= m["meta_trigger_delay_ms"]["p50"] < 42 * 1.13
    status = await queries.status(redis, keys)
    assert status["consumer_lag"] == 0 and status["events_applied"] == committed + 2
    rounds = status["streams"]["rounds"]
    assert rounds["streams"] == keys.shards and rounds["length"] == committed
    assert rounds["applied"] == committed and rounds["shard_lags"] == {}
    assert status["streams"]["meta"]["applied"] == 2
    # The per-minute series sum the shards' minutes too, and end at the fleet's total.
    rows = await queries.series_rows(redis, keys, 5, int(time.time() * 1000))
    assert sum(r["rounds_per_min"] for r in rows) == committed
    assert rows[-1]["rounds"] == committed and rows[-1]["meta_completed"] == 1


async def test_restarts_and_uptime_from_system_events(redis: Redis, keys: Keys) -> None:
    await ensure_groups(redis, keys)
    now = int(time.time() * 1000)
    # coach: up 40 s ago, exited 20 s ago, restarted and up again 10 s ago -> 30 of 40 s up
    events = [
        (now - 40_000, {"type": "service_started", "service": "coach"}),
        (now - 20_000, {"type": "process_exited", "service": "coach"}),
        (now - 10_001, {"type": "process_restarted", "service": "coach"}),
        (now - 10_000, {"type": "service_started", "service": "coach"}),
        (now - 30_000, {"type": "service_started", "service": "training"}),
    ]
    for ms, fields in sorted(events, key=lambda e: e[0]):
        await redis.xadd(keys.stream_system, {**fields, "ts": ms}, id=f"{ms}-0")
    await emit_system_event(redis, keys, service="meta", kind="process_failed")
    consumer = ReportsConsumer(redis, keys, "me")
    assert await consumer.drain() == 6
    m = await queries.metrics(redis, keys, 60, int(time.time() * 1000))
    coach = m["services"]["coach"]
    assert coach["restarts"] == 1 and coach["up"] is True
    assert 70.0 <= coach["uptime_pct"] <= 80.0
    assert m["services"]["training"] == {"uptime_pct": 100.0, "restarts": 0, "up": True}
    assert m["services"]["meta"]["up"] is False
    assert m["restarts"] == 1


async def test_error_rate_from_http_stats(redis: Redis, keys: Keys) -> None:
    minute = int(time.time()) // 60
    await redis.hset(
        keys.http_stats(minute),
        mapping={"training:requests": 1500, "training:errors": 3, "coach:requests": 500},
    )
    await redis.hset(keys.http_stats(minute - 1), mapping={"web:requests": 2000, "web:errors": 1})
    await redis.hset(keys.http_stats(minute - 5), mapping={"web:requests": 10, "web:errors": 10})
    m = await queries.metrics(redis, keys, 60, int(time.time() * 1000))
    assert (m["requests"], m["errors"]) == (4000, 4)
    assert m["error_rate_pct"] == 0.1
