"""Whether a population target fits Redis's memory: the scale endpoint's refusal of a target
that onboarding would have to grow toward when the learners it would create do not fit.

Bytes per learner are measured, not assumed: MEMORY USAGE of every key of a small sample of
existing learners (`Keys.learner_keys`: state, history, meta, meta log, meta lock), plus each
sampled learner's share of its shard's per-learner indexes (learners index, inactive set, coach
queue, ready set, coached set: the index's usage divided by its members). So the figure follows
whatever the keys hold, the learner encoding of the day included. The sample is the oldest
learners of each shard (bounded: `SAMPLE` in all): they have trained longest, so their history is
the fullest a learner reaches; a conservative figure. With no learner yet, DEFAULT_BYTES_PER_LEARNER.

Available bytes: `maxmemory - used_memory` of the fullest master (shared/redis_memory.py): on a
Redis Cluster each master refuses writes on its own when full, and new learners spread evenly
over the masters (their shards' slots), so the fullest master must take its share of the growth,
`learners to add × bytes per learner × ⌈S ÷ masters⌉ ÷ S` (all of it on a single Redis). No maxmemory: no refusal. Read-only; the check
runs before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from shared.fleet_totals import learner_count
from shared.keys import Keys
from shared.redis_memory import fullest, masters_memory
from shared.redis_types import FleetRedis

SAMPLE = 16  # learners measured, at most
# A conservative figure for a fleet with no learner to measure: about twice a learner trained
# through a full 100-round history with the encoding this figure was set with (measured 17.3 KB,
# a fresh one 0.5 KB: tests/unit/test_memory_budget.py measures the same way). Never used once a
# learner exists.
DEFAULT_BYTES_PER_LEARNER = 32_768


@dataclass(frozen=True, slots=True)
class Budget:
    learners: int  # the population now
    target: int
    bytes_per_learner: int
    measured: int  # learners sampled (0: the default figure)
    bytes_needed: int  # on the fullest master
    bytes_available: int | None  # None: no maxmemory, no bound
    node: str
    masters: int

    @property
    def fits(self) -> bool:
        return self.bytes_available is None or self.bytes_needed <= self.bytes_available

    def details(self) -> dict[str, Any]:
        return {
            "bytes_needed": self.bytes_needed,
            "bytes_available": self.bytes_available,
            "bytes_per_learner": self.bytes_per_learner,
            "learners_sampled": self.measured,
            "learners_to_add": max(0, self.target - self.learners),
            "fullest_master": self.node,
            "masters": self.masters,
        }


def _shard_indexes(keys: Keys, shard: int) -> list[str]:
    return [
        keys.learners_index(shard),
        keys.learners_inactive(shard),
        keys.coach_queue(shard),
        keys.coach_ready(shard),
        keys.coach_coached(shard),
    ]


async def bytes_per_learner(redis: FleetRedis, keys: Keys, sample: int = SAMPLE) -> tuple[int, int]:
    """(bytes per learner, learners measured); the default figure with 0 measured."""
    per_shard = max(1, math.ceil(sample / keys.shards))
    async with redis.pipeline(transaction=False) as pipe:
        for s in keys.all_shards():
            pipe.zrange(keys.learners_index(s), 0, per_shard - 1)
        heads = await pipe.execute()
    chosen = [
        (s, str(learner))
        for s, rows in zip(keys.all_shards(), heads, strict=True)
        for learner in rows
    ][:sample]
    if not chosen:
        return DEFAULT_BYTES_PER_LEARNER, 0
    shards = sorted({s for s, _ in chosen})
    async with redis.pipeline(transaction=False) as pipe:
        for _, learner in chosen:
            for key in keys.learner_keys(learner):
                pipe.memory_usage(key)
        for s in shards:
            for key in _shard_indexes(keys, s):
                pipe.memory_usage(key)
                pipe.zcard(key)
        replies = await pipe.execute()
    per_key = len(keys.learner_keys(chosen[0][1]))
    own = sum(int(r or 0) for r in replies[: per_key * len(chosen)])
    share: dict[int, float] = {}
    rest = replies[per_key * len(chosen) :]
    width = 2 * len(_shard_indexes(keys, 0))
    for i, s in enumerate(shards):
        part = rest[i * width : (i + 1) * width]
        pairs = zip(part[::2], part[1::2], strict=True)
        share[s] = sum(int(u or 0) / int(c) for u, c in pairs if int(c or 0))
    total = own + sum(share[s] for s, _ in chosen)
    return max(1, math.ceil(total / len(chosen))), len(chosen)


async def budget(redis: FleetRedis, keys: Keys, target: int) -> Budget:
    """The memory the target needs beyond the population and what the fullest master has left.
    A target at or below the population (a throttle, or a hold) needs nothing: not measured."""
    learners = await learner_count(redis, keys)
    if target <= learners:
        return Budget(learners, target, 0, 0, 0, None, "", 0)
    nodes = await masters_memory(redis)
    node = fullest(nodes)
    per_learner, measured = await bytes_per_learner(redis, keys)
    # The fullest master's share of the growth: the most shards a master can hold, of S.
    share = math.ceil(keys.shards / len(nodes)) / keys.shards
    needed = math.ceil((target - learners) * per_learner * share)
    available = max(0, node.limit - node.used) if node.limit else None
    return Budget(learners, target, per_learner, measured, needed, available, node.node, len(nodes))
