"""The stream event contract: round trips of every event, lenient reading of bad entries, and the
entries the real writers (the Lua scripts, the meta engine, emit_system_event) put in Redis."""

from __future__ import annotations

import time

import orjson
import pytest
from redis.asyncio import Redis

from services.meta.engine import MetaEngine, Trigger
from services.meta.store import MetaStore
from shared.commit_rounds import CommitHeader, commit_rounds_args
from shared.events import (
    CompletedEvent,
    ReadyEvent,
    RoundEvent,
    SystemEvent,
    emit_system_event,
    event_type,
    fleet_streams,
    meta_event,
    shard_streams,
)
from shared.keys import Keys
from shared.learner_state import DomainState, LearnerState, encode
from shared.scripts import Scripts

EVENTS = [
    RoundEvent(round=41, learner="a", region="eu", ts=1_700_000_000_123, ms=0.412, avg=81.25),
    ReadyEvent(learner="a", round=41, ts=1_700_000_000_123, avg=81.25, below=2),
    CompletedEvent(learner="a", round=41, delay_ms=35, ts=1_700_000_000_200, ran=(1, 2, 3, 4)),
    CompletedEvent(learner="a", ts=1_700_000_000_200),  # no trigger, nothing ran
    SystemEvent(type="service_started", service="coach", ts=1, extra={"pid": "12"}),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_round_trip(event: RoundEvent | ReadyEvent | CompletedEvent | SystemEvent) -> None:
    fields = event.to_fields()
    assert all(isinstance(v, str) for v in fields.values())  # what Redis hands back
    assert type(event).from_fields(fields) == event


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
async def test_round_trip_through_a_stream(
    redis: Redis, keys: Keys, event: RoundEvent | ReadyEvent | CompletedEvent | SystemEvent
) -> None:
    await redis.xadd(keys.stream_meta(0), event.to_fields())
    ((_, fields),) = await redis.xrange(keys.stream_meta(0))
    assert type(event).from_fields(fields) == event


def test_fields_keep_the_writers_order_and_leave_out_what_is_unknown() -> None:
    assert list(EVENTS[0].to_fields()) == ["round", "learner", "region", "ts", "ms", "avg"]
    assert list(EVENTS[1].to_fields()) == ["type", "learner", "round", "ts", "avg", "below"]
    assert EVENTS[3].to_fields() == {
        "type": "completed",
        "learner": "a",
        "ts": "1700000000200",
        "ran": "",
    }


def test_a_bad_entry_reads_as_what_could_be_read() -> None:
    rnd = RoundEvent.from_fields({"round": "x", "ms": "-1", "avg": "nan", "region": "eu"})
    assert rnd == RoundEvent(region="eu")
    assert RoundEvent.from_fields({"ms": "inf"}).ms is None
    assert RoundEvent.from_fields({"ms": "12"}).ms == 12.0
    ready = ReadyEvent.from_fields({"type": "ready", "learner": "a"})
    assert (ready.learner, ready.round, ready.ts) == ("a", None, None)
    assert CompletedEvent.from_fields({"ran": "1,x"}).ran == ()
    assert SystemEvent.from_fields({}) == SystemEvent()


def test_meta_entries_are_told_apart_by_type() -> None:
    assert meta_event(EVENTS[1].to_fields()) == EVENTS[1]
    assert meta_event(EVENTS[2].to_fields()) == EVENTS[2]
    assert meta_event({"type": "failed", "learner": "a"}) is None
    assert event_type({"type": "failed"}) == "failed" and event_type({}) == ""


async def create_learner(scripts: Scripts, keys: Keys, learner: str) -> None:
    state = LearnerState(
        id=learner,
        seed=1,
        region="eu",
        active=True,
        domains={"dsa": DomainState(skill=0.5, half_life=3600.0, last=1.0, attempts=3)},
    )
    await scripts.create_learner(
        keys=keys.create_learner_keys(learner), args=[learner, encode(state), "eu", 1]
    )


async def test_commit_rounds_writes_round_and_ready_events(
    redis: Redis, scripts: Scripts, keys: Keys
) -> None:
    await create_learner(scripts, keys, "a")
    state = LearnerState(id="a", seed=1, region="eu", active=True, rounds=2)
    # round_base 0: this test reads one learner's ids (1, 2), whatever its shard's base is.
    header = CommitHeader("1", encode(state), "a", "eu", 82.5, 2, 5000, 100, round_base=0)
    entry = orjson.dumps({"trained": ["dsa"]}).decode()
    args = commit_rounds_args(header, [(entry, 3), (entry, 0.25)])
    result = await scripts.commit_rounds(keys=keys.commit_rounds_keys("a"), args=args)
    assert result[0] == 1 and result[4] == 1  # became ready

    # The learner's shard's streams.
    shard = keys.shard_of("a")
    rounds = [RoundEvent.from_fields(f) for _, f in await redis.xrange(keys.stream_rounds(shard))]
    ts = rounds[0].ts
    assert ts is not None and abs(ts - time.time() * 1000) < 60_000
    assert rounds == [
        RoundEvent(round=1, learner="a", region="eu", ts=ts, ms=3.0, avg=82.5),
        RoundEvent(round=2, learner="a", region="eu", ts=ts, ms=0.25, avg=82.5),
    ]
    ((_, fields),) = await redis.xrange(keys.stream_meta(shard))
    assert meta_event(fields) == ReadyEvent(learner="a", round=2, ts=ts, avg=82.5, below=2)


async def test_meta_run_writes_the_completed_event_it_built(
    redis: Redis, scripts: Scripts, keys: Keys
) -> None:
    await create_learner(scripts, keys, "a")
    trigger = Trigger(round=7, ts=int(time.time() * 1000) - 50)
    # The readiness record commit_rounds writes when the learner becomes ready: meta reads it.
    await redis.hset(keys.learner_state("a"), mapping={"rr": trigger.round, "rt": trigger.ts})
    answer = await MetaEngine(MetaStore(redis, keys, scripts)).run_all("a", trigger)
    ((_, fields),) = await redis.xrange(keys.stream_meta(keys.shard_of("a")))
    event = meta_event(fields)
    assert isinstance(event, CompletedEvent)
    assert (event.learner, event.round, event.delay_ms) == ("a", 7, answer["delay_ms"])
    assert event.ran == tuple(answer["ran"]) == (1, 2, 3, 4)
    assert event.ts is not None and event.ts >= trigger.ts
    stats = keys.meta_stats(keys.shard_of("a"))
    assert await redis.hget(stats, "delayLastMs") == str(answer["delay_ms"])


async def test_emit_system_event_writes_a_system_event(redis: Redis, keys: Keys) -> None:
    before = int(time.time() * 1000)
    await emit_system_event(
        redis, keys, service="coach", kind="settings_changed", pid=12, on=True, x=None, f=0.5
    )
    ((_, fields),) = await redis.xrange(keys.stream_system)
    assert list(fields) == ["type", "service", "ts", "pid", "on", "f"]
    event = SystemEvent.from_fields(fields)
    assert (event.type, event.service) == ("settings_changed", "coach")
    assert event.ts is not None and event.ts >= before
    assert event.extra == {"pid": "12", "on": "1", "f": "0.5"}


def test_every_stream_of_the_fleet_once_with_its_kind_and_shard() -> None:
    keys = Keys("p", shards=3)
    streams = fleet_streams(keys)
    assert [(s.kind, s.shard) for s in streams] == [
        ("rounds", 0), ("meta", 0), ("rounds", 1), ("meta", 1), ("rounds", 2), ("meta", 2),
        ("system", None),
    ]  # fmt: skip
    assert streams[2].key == keys.stream_rounds(1) == "p:{s:1}:events:rounds"
    assert streams[-1].key == keys.stream_system
    assert [s.key for s in shard_streams(keys, 2)] == [keys.stream_rounds(2), keys.stream_meta(2)]
