"""`tooloo-migrate` folds a learner's history list (the encoding before the compact string) into
the string: the history reads the same before and after, the list is gone, the state carries the
string's anchor (so the next round's record continues it), and a second run does nothing."""

from __future__ import annotations

import random
from typing import Any

import orjson

from shared import history
from shared.commit_rounds import CommitHeader, commit_rounds_args
from shared.history import Anchor
from shared.keys import Keys, round_id_base
from shared.learner_state import LearnerState, decode, encode
from shared.migrate_history import compact_histories
from shared.scripts import Scripts


def entry(rng: random.Random, n: int) -> dict[str, Any]:
    topics = rng.sample(["dsa", "os", "ml", "theory", "databases"], 3)
    return {
        "n": n,
        "ts": 1_790_000_000_000 + 2_000 * n,
        "trained": topics,
        "scores": {t: rng.choice([60, 80, 100]) for t in topics},
        "avg": round(50 + n / 7, 2),
        "ms": 0.25,
    }


async def commit(redis, scripts: Scripts, keys: Keys, learner: str, e: dict[str, Any]) -> None:
    v, s = await redis.hmget(keys.learner_state(learner), ["v", "s"])
    state = decode(s)
    anchor = Anchor(state.hist_ts, state.hist_avg, e["n"] - 1, state.hist_topics)
    bodies = history.encode_entries(anchor, [e])
    state.hist_ts, state.hist_avg = anchor.ts, anchor.avg
    header = CommitHeader(
        v, encode(state), learner, "eu", 10, 9, 0, 100,
        round_base=round_id_base(keys.shard_of(learner)), history_anchor=anchor.encode(),
    )  # fmt: skip
    res = await scripts.commit_rounds(
        keys=keys.commit_rounds_keys(learner), args=commit_rounds_args(header, [(bodies[0], 1.0)])
    )
    assert res[0] == 1


async def read(redis, keys: Keys, learner: str) -> list[dict[str, Any]]:
    blob = await redis.get(keys.learner_history(learner))
    legacy = await redis.lrange(keys.learner_history_list(learner), 0, -1)
    return history.read_entries(blob, legacy, 1000)


async def test_history_lists_are_folded_into_the_string(redis, scripts: Scripts, keys: Keys):
    rng = random.Random(5)
    learners = ["f1", "f2", "f3"]
    for learner in learners:
        state = LearnerState(id=learner, seed=3, region="eu", active=True)
        await scripts.create_learner(
            keys=keys.create_learner_keys(learner), args=[learner, encode(state), "eu", 1]
        )
    base = round_id_base(keys.shard_of("f1"))
    # f1: 30 rounds in a list (newest first, with ids), then 4 rounds in the string
    old = [{"round": base + 10 * n, **entry(rng, n)} for n in range(1, 31)]
    odd = {"round": base + 305, "n": 31, "trained": ["dsa"]}  # not packable: kept as JSON
    await redis.lpush(keys.learner_history_list("f1"), *(orjson.dumps(x) for x in [*old, odd]))
    for n in range(32, 36):
        await commit(redis, scripts, keys, "f1", entry(rng, n))
    # f2: a list only; f3: nothing to fold
    await redis.lpush(keys.learner_history_list("f2"), *(orjson.dumps(x) for x in old[:3]))
    before = {x: await read(redis, keys, x) for x in learners}
    assert len(before["f1"]) == 35 and before["f1"][4] == odd
    v_before = await redis.hget(keys.learner_state("f1"), "v")

    assert await compact_histories(redis, keys) == 2
    for learner in learners:
        assert await read(redis, keys, learner) == before[learner]
        assert not await redis.exists(keys.learner_history_list(learner))
    assert int(await redis.hget(keys.learner_state("f1"), "v")) == int(v_before) + 1
    string = await redis.get(keys.learner_history(learner="f1"))
    assert len(string) < sum(len(orjson.dumps(x)) for x in before["f1"]) / 4

    # The next round continues the string from the anchor the state now carries.
    nxt = entry(rng, 36)
    await commit(redis, scripts, keys, "f1", nxt)
    after = await read(redis, keys, "f1")
    assert after[1:] == before["f1"] and after[0]["n"] == 36
    assert {k: v for k, v in after[0].items() if k != "round"} == nxt

    snapshot = {x: await redis.get(keys.learner_history(x)) for x in learners}
    assert await compact_histories(redis, keys) == 0  # recorded as done: not scanned again
    assert {x: await redis.get(keys.learner_history(x)) for x in learners} == snapshot
