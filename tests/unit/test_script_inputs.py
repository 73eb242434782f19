"""Every fleet script (except commit_rounds, tested with its own change) refuses bad arguments
with an `INVALID <script>: …` error reply before its first write: Redis does not roll back a
script that fails half-way, so a refusal must leave every key exactly as it was (each case
compares a DUMP of every key under the test's prefix before and after). The error middleware
answers such a refusal with a 500 `script_rejected_input` envelope (shared.errors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from services.reports.apply import GROUP
from shared.errors import redis_error_of
from shared.keys import Keys
from shared.learner_state import LearnerState, encode
from shared.scripts import Scripts, lua_source
from tests.snapshot import snapshot

STATE = encode(LearnerState(id="a", seed=1, region="eu", created=1.0, active=True))
DOC = orjson.dumps({"p": 1}).decode()
LOG = orjson.dumps({"e": 1}).decode()
# The shard of the seeded learner `a` (Keys' default shard count), whose shard keys the cases use.
A = Keys().shard_of("a")

Script = Callable[[Redis, Scripts], AsyncScript]


def shared(name: str) -> Script:
    return lambda redis, scripts: getattr(scripts, name)


def own(package: str, name: str) -> Script:
    return lambda redis, scripts: redis.register_script(lua_source(package, name))


def meta_args(*, n: int = 0, log: tuple[str, ...] = (), event: tuple[Any, ...] = (), **kw: Any):
    out = [kw.get("mv", "0"), kw.get("doc", DOC), kw.get("cap", 3), kw.get("sv", "")]
    out += [kw.get("state", ""), kw.get("ran", 0), n, ""]
    return out + list(log) + list(event)


COMPLETED = ("type", "completed", "learner", "a", "round", 9, "ts", 1)

# (id, script, keys(keys), args); every case is refused before any write.
CASES: list[tuple[str, Script, Callable[[Keys], list[str]], list[Any]]] = [
    ("cas: too few args", shared("cas_state"), lambda k: k.cas_state_keys("a"), ["1", STATE, "a"]),
    ("cas: version", shared("cas_state"), lambda k: k.cas_state_keys("a"), ["x", STATE, "a", "keep"]),
    ("cas: state json", shared("cas_state"), lambda k: k.cas_state_keys("a"), ["1", "{", "a", "queue"]),
    ("cas: learner id", shared("cas_state"), lambda k: k.cas_state_keys("a"), ["1", STATE, "a b", "queue"]),
    ("cas: op", shared("cas_state"), lambda k: k.cas_state_keys("a"), ["1", STATE, "a", "drop"]),
    ("create: count", shared("create_learner"), lambda k: k.create_learner_keys("b"), ["b", STATE, "eu"]),
    ("create: id", shared("create_learner"), lambda k: k.create_learner_keys("b"), ["b/1", STATE, "eu", "1"]),
    ("create: json", shared("create_learner"), lambda k: k.create_learner_keys("b"), ["b", "nope", "eu", "1"]),
    ("create: region", shared("create_learner"), lambda k: k.create_learner_keys("b"), ["b", STATE, "e u", "1"]),
    ("create: active", shared("create_learner"), lambda k: k.create_learner_keys("b"), ["b", STATE, "eu", "yes"]),
    ("delete: count", shared("delete_learner"), lambda k: k.delete_learner_keys("a"), ["a", "a"]),
    ("delete: id", shared("delete_learner"), lambda k: k.delete_learner_keys("a"), ["a:*"]),
    ("delete: stored json", shared("delete_learner"), lambda k: k.delete_learner_keys("bad"), ["bad"]),
    ("renew: token", shared("lease_renew"), lambda k: [k.coach_lease(A)], ["", 100]),
    ("renew: ttl", shared("lease_renew"), lambda k: [k.coach_lease(A)], ["holder", "soon"]),
    ("renew: count", shared("lease_renew"), lambda k: [k.coach_lease(A)], ["holder"]),
    ("release: token", shared("lease_release"), lambda k: [k.coach_lease(A)], [""]),
    ("release: count", shared("lease_release"), lambda k: [k.coach_lease(A)], []),
    ("acquire: ttl", shared("shard_lease_acquire"), lambda k: [k.coach_lease(A), k.coach_fence(A)], ["x", "-1"]),
    ("promote: now", own("services.coach", "promote_due"), lambda k: [k.coach_ready(A), k.coach_queue(A), k.coach_fence(A)], ["later", 10, ""]),
    ("promote: limit", own("services.coach", "promote_due"), lambda k: [k.coach_ready(A), k.coach_queue(A), k.coach_fence(A)], [5000, 0, ""]),
    ("promote: count", own("services.coach", "promote_due"), lambda k: [k.coach_ready(A), k.coach_queue(A), k.coach_fence(A)], [5000, 10]),
    ("promote: token", own("services.coach", "promote_due"), lambda k: [k.coach_ready(A), k.coach_queue(A), k.coach_fence(A)], [5000, 10, "x"]),
    ("meta: version", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(mv="v1")),
    ("meta: doc json", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(doc="{")),
    ("meta: log cap", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(cap=0)),
    ("meta: state missing", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(sv="1")),
    ("meta: log count", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(n=2, log=(LOG,))),
    ("meta: log json", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(n=1, log=("[",))),
    ("meta: event pairs", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(event=(*COMPLETED, "delay_ms"))),
    ("meta: delay", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(sv="1", state=STATE, event=(*COMPLETED, "delay_ms", "1e9"))),
    # The review's case (3.4): the delay sum overflows, after state, meta, log and event.
    ("meta: delay overflow", own("services.meta", "meta_commit"), lambda k: k.meta_commit_keys("a"), meta_args(sv="1", state=STATE, n=1, log=(LOG,), event=(*COMPLETED, "delay_ms", 5))),
    ("trim: cap", shared("stream_trim"), lambda k: [k.stream_rounds(A)], ["many", 10, 0]),
    ("trim: retention", shared("stream_trim"), lambda k: [k.stream_rounds(A)], [10, 10, -1]),
]  # fmt: skip


def reports_call(keys: Keys, ops_second: list[Any]) -> tuple[list[str], list[Any]]:
    """Two entries: the first valid (would count a round), the second with `ops_second`."""
    targets = [keys.reports_totals(A)]
    args = [GROUP, "rounds", 60, 0, 2, "1-1", 1, "i", 1, "rounds", 1, "2-1", 1, *ops_second]
    return [keys.stream_rounds(A), keys.reports_cursor(A), *targets], args


REPORTS_CASES = [
    ("unknown op", ["x", 1, "a", 1]),
    ("float inf", ["f", 1, "lat", "inf"]),
    ("integer increment", ["i", 1, "rounds", "1.5"]),
    ("target index", ["i", 9, "rounds", 1]),
    ("score", ["z", 1, "nan", "member"]),
    ("counter overflow", ["i", 1, "big", 1]),
    ("left over", ["s", 1, "a", "b", "extra"]),
]


@pytest.fixture
async def seeded(redis: Redis, scripts: Scripts, keys: Keys) -> None:
    """A learner `a` (version 1) with a meta document, a learner `bad` whose stored state is
    not JSON, a lease, the streams with the reports group and two pending entries."""
    await scripts.create_learner(keys=keys.create_learner_keys("a"), args=["a", STATE, "eu", 1])
    await redis.hset(keys.learner_state("bad"), mapping={"v": 1, "s": "not json"})
    await redis.hset(keys.meta_stats(A), mapping={"delaySumMs": 2**63 - 2, "completed": 4})
    await redis.set(keys.coach_lease(A), "holder", px=60_000)
    await redis.zadd(keys.coach_ready(A), {"r": 1})
    await redis.hset(keys.reports_totals(A), mapping={"rounds": 5, "big": 2**53 - 1})
    await redis.xgroup_create(keys.stream_rounds(A), GROUP, id="0", mkstream=True)
    await redis.xadd(keys.stream_rounds(A), {"round": 1}, id="1-1")
    await redis.xadd(keys.stream_rounds(A), {"round": 2}, id="2-1")
    await redis.xreadgroup(GROUP, "c", {keys.stream_rounds(A): ">"})


async def refused(redis: Redis, prefix: str, call: Any) -> str:
    before = await snapshot(redis, prefix)
    with pytest.raises(ResponseError) as err:
        await call
    assert await snapshot(redis, prefix) == before, "a refused script changed Redis"
    return str(err.value)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_bad_arguments_change_nothing(
    redis: Redis, scripts: Scripts, keys: Keys, prefix: str, seeded: None, case: Any
) -> None:
    _, script, script_keys, args = case
    message = await refused(
        redis, prefix, script(redis, scripts)(keys=script_keys(keys), args=args)
    )
    assert message.startswith("INVALID "), message
    api = redis_error_of(ResponseError(message))
    assert api is not None and api.code == "script_rejected_input" and api.status == 500


@pytest.mark.parametrize("case", REPORTS_CASES, ids=[c[0] for c in REPORTS_CASES])
async def test_reports_apply_refuses_a_poison_batch_whole(
    redis: Redis, scripts: Scripts, keys: Keys, prefix: str, seeded: None, case: Any
) -> None:
    """Failed before: the first entry's increments were applied, then the script errored, so
    every retry counted them again."""
    script = redis.register_script(lua_source("services.reports", "reports_apply"))
    script_keys, args = reports_call(keys, case[1])
    message = await refused(redis, prefix, script(keys=script_keys, args=args))
    assert message.startswith("INVALID reports_apply"), message


async def test_valid_calls_still_work(
    redis: Redis, scripts: Scripts, keys: Keys, seeded: None
) -> None:
    script = redis.register_script(lua_source("services.reports", "reports_apply"))
    script_keys, args = reports_call(keys, ["i", 1, "rounds", 1])
    assert await script(keys=script_keys, args=args) == [2, 0]
    assert await redis.hget(keys.reports_totals(A), "rounds") == "7"
    commit = redis.register_script(lua_source("services.meta", "meta_commit"))
    res = await commit(
        keys=keys.meta_commit_keys("a"),
        args=meta_args(sv="1", state=STATE, n=1, log=(LOG,), event=COMPLETED),
    )
    assert res[0] == 1
