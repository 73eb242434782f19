"""The shard lease scripts and the coach's own scripts refuse bad arguments with an
`INVALID <script>: …` error reply before their first write (Redis does not roll back a script
that fails half-way: each case compares a DUMP of every key before and after)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared.keys import Keys
from shared.scripts import lua_source, script_source
from tests.snapshot import snapshot

S = 3  # the shard every case works in


def shared(name: str) -> str:
    return script_source(name)


def coach(name: str) -> str:
    return lua_source("services.coach", name)


def promote_keys(k: Keys) -> list[str]:
    return [k.coach_ready(S), k.coach_queue(S), k.coach_fence(S)]


def record_keys(k: Keys) -> list[str]:
    return [
        k.coach_fence(S),
        k.coach_queue(S),
        k.coach_coached(S),
        k.coach_fastlane_auto(S),
        k.coach_fastlane(S),
        k.coach_fastlane_out(S),
    ]


def pins_keys(k: Keys) -> list[str]:
    return [k.coach_fastlane(S), k.coach_fastlane_out(S), k.coach_fastlane_auto(S)]


CASES: list[tuple[str, str, Callable[[Keys], list[str]], list[Any]]] = [
    ("acquire: token", shared("shard_lease_acquire"), lambda k: [k.coach_lease(S), k.coach_fence(S)], ["", 100]),
    ("acquire: ttl", shared("shard_lease_acquire"), lambda k: [k.coach_lease(S), k.coach_fence(S)], ["x", "-1"]),
    ("acquire: fence", shared("shard_lease_acquire"), lambda k: [k.coach_lease(S + 1), k.coach_fence(S + 1)], ["x", 100]),
    ("members: token", shared("shard_members"), lambda k: [k.coach_members], ["", 100, "0"]),
    ("members: ttl", shared("shard_members"), lambda k: [k.coach_members], ["x", "0", "0"]),
    ("members: leave", shared("shard_members"), lambda k: [k.coach_members], ["x", 100, "yes"]),
    ("promote: now", coach("promote_due"), promote_keys, ["later", 10, ""]),
    ("promote: limit", coach("promote_due"), promote_keys, [5000, 0, ""]),
    ("promote: count", coach("promote_due"), promote_keys, [5000, 10]),
    ("promote: token", coach("promote_due"), promote_keys, [5000, 10, "x"]),
    ("record: count", coach("record_shard"), record_keys, ["", 1, 0]),
    ("record: token", coach("record_shard"), record_keys, ["x", 1, 0, 1000, 0, 0, 0, 0]),
    ("record: now", coach("record_shard"), record_keys, ["", "soon", 0, 1000, 0, 0, 0, 0]),
    ("record: window", coach("record_shard"), record_keys, ["", 1, 0, 0, 0, 0, 0, 0]),
    ("record: cap", coach("record_shard"), record_keys, ["", 1, 0, 1000, -1, 0, 0, 0]),
    ("record: coached count", coach("record_shard"), record_keys, ["", 1, 0, 1000, 0, 2, 0, 0, "a"]),
    ("record: close count", coach("record_shard"), record_keys, ["", 1, 0, 1000, 1, 0, 0, 3, "a"]),
    ("record: pairs", coach("record_shard"), record_keys, ["", 1, 0, 1000, 0, 0, 0, 0, "a"]),
    ("record: increment", coach("record_shard"), record_keys, ["", 1, 0, 1000, 0, 1, 0, 0, "a", "b", "nan"]),
    ("record: late bad increment", coach("record_shard"), record_keys, ["", 1, 0, 1000, 0, 0, 0, 0, "a", 1, "b", -1]),
    ("pins: counts", coach("fastlane_pins"), pins_keys, ["x", 0, 0]),
    ("pins: arguments", coach("fastlane_pins"), pins_keys, [1, 0, 0]),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_scripts_refuse_bad_input_before_writing(
    redis: Redis, keys: Keys, prefix: str, case: Any
) -> None:
    _, source, script_keys, args = case
    await redis.set(keys.coach_lease(S), "holder", px=60_000)
    await redis.set(keys.coach_fence(S), 4)
    await redis.set(keys.coach_fence(S + 1), "not a counter")
    await redis.zadd(keys.coach_queue(S), {"a": 1})
    await redis.zadd(keys.coach_ready(S), {"r": 1})
    await redis.zadd(keys.coach_members, {"m": 1})
    before = await snapshot(redis, prefix)
    with pytest.raises(ResponseError) as err:
        await redis.register_script(source)(keys=script_keys(keys), args=args)
    assert str(err.value).startswith("INVALID "), err.value
    assert await snapshot(redis, prefix) == before, "a refused script changed Redis"


async def test_record_shard_writes_under_the_current_token_only(redis: Redis, keys: Keys) -> None:
    record = redis.register_script(coach("record_shard"))
    await redis.set(keys.coach_fence(S), 4)
    await redis.zadd(keys.coach_queue(S), {"a": 1, "b": 1})
    await redis.zadd(keys.coach_coached(S), {"old": 10})
    args = [5000, 100, 1000, 0, 1, 0, 0, "a", "a", 0.5, "b", 1, "gone", 1]
    assert await record(keys=record_keys(keys), args=["3", *args]) == -1  # a stale token
    assert await redis.zrange(keys.coach_queue(S), 0, -1, withscores=True) == [
        ("a", 1.0), ("b", 1.0),
    ]  # fmt: skip
    assert await record(keys=record_keys(keys), args=["4", *args]) == 1
    assert await redis.zrange(keys.coach_queue(S), 0, -1, withscores=True) == [
        ("a", 1.5), ("b", 2.0),
    ]  # fmt: skip
    # `old` pruned (coached before the window), `gone` (left the queue) not re-added.
    assert await redis.zrange(keys.coach_coached(S), 0, -1, withscores=True) == [("a", 5000.0)]
