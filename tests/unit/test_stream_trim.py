"""Stream trimming by consumer progress (shared/stream_trim.py) against a real redis-server: it
never deletes an entry a group has not been given or has not acknowledged, caps a stream that
has no group, and the writers no longer cap their XADDs by length (which lost unread entries).
Also each group's lag, computed without XINFO's `lag` field."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from services.reports import queries
from services.reports.consumer import ReportsConsumer, StreamTrimmer
from shared.events import emit_system_event
from shared.fleet_totals import rounds_total
from shared.keys import Keys
from shared.learner_state import LearnerState, encode
from shared.scripts import Scripts, lua_source
from shared.stream_trim import group_lags, trim_script, trim_stream

FILL = "for i = 1, tonumber(ARGV[1]) do redis.call('XADD', KEYS[1], '*', 'n', i) end"


async def fill(redis: Redis, stream: str, n: int) -> list[str]:
    """Append n entries server-side (fast), and return every id of the stream in order."""
    await redis.eval(FILL, 1, stream, n)
    return [eid for eid, _ in await redis.xrange(stream)]


async def ids_of(redis: Redis, stream: str) -> list[str]:
    return [eid for eid, _ in await redis.xrange(stream)]


async def test_trims_only_below_what_every_group_has_acknowledged(redis: Redis, keys: Keys) -> None:
    stream = keys.stream_rounds(0)
    ids = await fill(redis, stream, 1000)
    # Group a: read 800, acknowledged all of them. Group b: read 500, acknowledged all but
    # entries 300..309 (still pending). Group c: created at the end ($): it needs nothing old.
    await redis.xgroup_create(stream, "a", id="0")
    await redis.xgroup_create(stream, "b", id="0")
    await redis.xgroup_create(stream, "c", id="$")
    read_a = await redis.xreadgroup("a", "x", {stream: ">"}, count=800)
    await redis.xack(stream, "a", *[eid for eid, _ in read_a[0][1]])
    await redis.xreadgroup("b", "y", {stream: ">"}, count=500)
    await redis.xack(stream, "b", *ids[:300], *ids[310:500])

    result = await trim_stream(trim_script(redis), stream, cap=10)
    assert result.groups == 3 and result.floor == ids[300]  # b's oldest pending entry
    left = await ids_of(redis, stream)
    assert left == ids[len(ids) - len(left) :]  # only a prefix went
    assert ids[300] in left  # nothing pending or undelivered for any group is gone
    assert 200 <= result.trimmed <= 300 and len(left) == 1000 - result.trimmed

    # b acknowledges its pending entries: its floor moves to the entry after its last delivered.
    await redis.xack(stream, "b", *ids[300:310])
    result = await trim_stream(trim_script(redis), stream, cap=10)
    assert result.floor is not None and result.floor > ids[499] and result.floor <= ids[500]
    left = await ids_of(redis, stream)
    assert ids[500] in left and len(left) <= 700


async def test_acknowledged_entries_younger_than_the_retention_stay(
    redis: Redis, keys: Keys
) -> None:
    stream = keys.stream_rounds(0)
    ids = await fill(redis, stream, 1000)
    await redis.xgroup_create(stream, "reports", id="$")  # everything counts as acknowledged
    kept = await trim_stream(trim_script(redis), stream, cap=10, retention_ms=3_600_000)
    assert kept.trimmed == 0 and await ids_of(redis, stream) == ids  # all of the last hour
    gone = await trim_stream(trim_script(redis), stream, cap=10, retention_ms=0)
    assert gone.trimmed >= 900


async def test_a_group_that_read_nothing_keeps_everything(redis: Redis, keys: Keys) -> None:
    stream = keys.stream_meta(0)
    ids = await fill(redis, stream, 1000)
    await redis.xgroup_create(stream, "reports", id="0")
    result = await trim_stream(trim_script(redis), stream, cap=10)
    assert result.trimmed == 0 and await ids_of(redis, stream) == ids


async def test_a_stream_without_group_is_capped_by_length(redis: Redis, keys: Keys) -> None:
    stream = keys.stream_system
    await fill(redis, stream, 1000)
    result = await trim_stream(trim_script(redis), stream, cap=100)
    assert result.groups == 0 and result.floor is None
    # Approximate (whole macro nodes): never below the cap, at most a node above it.
    assert 100 <= await redis.xlen(stream) <= 200
    assert (await trim_stream(trim_script(redis), keys.prefix + ":none", cap=1)).trimmed == 0


async def test_group_lag_counts_undelivered_and_pending(redis: Redis, keys: Keys) -> None:
    stream = keys.stream_rounds(0)
    await fill(redis, stream, 50)
    await redis.xgroup_create(stream, "reports", id="0")
    await redis.xreadgroup("reports", "x", {stream: ">"}, count=20)
    (lag,) = await group_lags(redis, stream)
    assert (lag.group, lag.pending, lag.undelivered, lag.lag, lag.exact) == (
        "reports",
        20,
        30,
        50,
        True,
    )
    (lag,) = await group_lags(redis, stream, scan_limit=10)
    assert lag.undelivered in (10, 30) and (lag.exact or lag.undelivered == 10)
    assert await group_lags(redis, keys.prefix + ":none") == []


# ---- the writers no longer cap by length -------------------------------------------------------
OLD_CAP = 100_000  # the MAXLEN the system and meta XADDs used to carry


async def test_system_events_never_trim_unread_entries(redis: Redis, keys: Keys) -> None:
    """Failed before: `XADD … MAXLEN ~ 100000` dropped entries reports had not read."""
    await redis.xgroup_create(keys.stream_system, "reports", id="0", mkstream=True)
    await redis.eval(FILL, 1, keys.stream_system, OLD_CAP + 500)
    await emit_system_event(redis, keys, service="web", kind="service_started")
    assert await redis.xlen(keys.stream_system) == OLD_CAP + 501


async def test_meta_commit_never_trims_unread_entries(
    redis: Redis, keys: Keys, scripts: Scripts
) -> None:
    """Failed before: meta_commit.lua appended its event with `MAXLEN ~ 100000`."""
    state = LearnerState(id="a", seed=1, region="eu", created=1.0, active=True)
    await scripts.create_learner(
        keys=keys.create_learner_keys("a"), args=["a", encode(state), "eu", 1]
    )
    meta_stream = keys.stream_meta(keys.shard_of("a"))
    await redis.xgroup_create(meta_stream, "reports", id="0", mkstream=True)
    await redis.eval(FILL, 1, meta_stream, OLD_CAP + 500)
    commit = redis.register_script(lua_source("services.meta", "meta_commit"))
    args = ["0", orjson.dumps({"p": 1}).decode(), 3, "", "", 0, 0, "", "type", "completed"]
    assert (await commit(keys=keys.meta_commit_keys("a"), args=args))[0] == 1
    assert await redis.xlen(meta_stream) == OLD_CAP + 501


# ---- every shard's streams, trimmed each on its own ------------------------------------------


async def test_an_outage_longer_than_any_cap_loses_no_unread_event_in_any_shard(
    redis: Redis, keys: Keys
) -> None:
    """Reports' groups exist, reports is down while every shard's rounds and meta streams and
    the system stream get 40× the cap: the trimmer keeps every entry; once reports has read
    and applied them all (each counted once), the trimmer frees them, shard by shard."""
    cap = 10
    trimmer = StreamTrimmer(redis, keys, cap=cap)
    await trimmer.ensure_groups()
    written = 0
    for shard in keys.all_shards():
        await fill(redis, keys.stream_rounds(shard), 40 * cap)
        await redis.incrby(keys.rounds_seq(shard), 40 * cap)
        await fill(redis, keys.stream_meta(shard), 2)
        written += 40 * cap + 2
    for _ in range(40 * cap):
        await emit_system_event(redis, keys, service="web", kind="settings_changed")
    written += 40 * cap

    results = await trimmer.run_once()
    assert len(results) == 2 * keys.shards + 1  # one call per stream
    assert sum(r.trimmed for r in results) == 0
    for shard in keys.all_shards():
        assert await redis.xlen(keys.stream_rounds(shard)) == 40 * cap

    consumer = ReportsConsumer(redis, keys, "back")
    assert await consumer.drain(max_passes=1000) == written
    status = await queries.status(redis, keys)
    assert status["rounds_total"] == await rounds_total(redis, keys) == 40 * cap * keys.shards
    assert status["consumer_lag"] == 0
    # The coach's groups on the meta streams have read nothing: the meta streams stay whole.
    results = await trimmer.run_once()
    by_stream = {r.stream: r for r in results}
    for shard in keys.all_shards():
        assert by_stream[keys.stream_rounds(shard)].trimmed > 0
        assert await redis.xlen(keys.stream_rounds(shard)) < 40 * cap
        assert by_stream[keys.stream_meta(shard)].trimmed == 0
        assert await redis.xlen(keys.stream_meta(shard)) == 2
    assert await redis.xlen(keys.stream_system) < 40 * cap


async def test_a_replica_trims_only_the_shards_it_owns_and_the_system_stream(
    redis: Redis, keys: Keys
) -> None:
    class Owns:
        def owned(self) -> frozenset[int]:
            return frozenset({1, 3})

        def token(self, shard: int) -> int | None:
            return None

    trimmer = StreamTrimmer(redis, keys, cap=10, ownership=Owns())
    assert trimmer.streams() == [
        keys.stream_rounds(1),
        keys.stream_meta(1),
        keys.stream_rounds(3),
        keys.stream_meta(3),
        keys.stream_system,
    ]
