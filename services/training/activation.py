"""Throttling the active population: which learners to deactivate or reactivate, and doing it.

The rule (POST /api/v1/system/scale): with `hold`, the active population is brought down to the
target by deactivating the learners created last; when the target rises again, the inactive
ones come back oldest first, so the newest deactivated is the last reactivated. An inactive
learner keeps all its data; the coach never sees it (it leaves the coach's queue and ready set)
and training refuses its rounds (commit_rounds.lua checks its mark).

Creation order is the fleet's listing order (services/training/paging.py): the position
`seq * S + shard` of a learner's creation number in its shard. Within a shard it is exact; across
shards it interleaves, which is creation order to within a few learners since ids spread evenly
over the shards by their hash. It needs no extra key per learner and stays fixed for a learner's
life.

Work is bounded: one tick (of the training replica holding the onboarding lease) changes at most
`batch` learners, found with two pipelined reads over the shards and changed with one script call
per shard (activation.lua, one slot each), all sent in one pipeline.

`decide` is the pure rule, tested on its own; `Activation` reads and writes Redis.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Literal

from services.training.paging import position
from shared.keys import Keys
from shared.redis_types import FleetRedis, scored
from shared.scripts import ScriptCall, evalsha_pipelined, lua_source

Action = Literal["none", "deactivate", "reactivate", "create"]
_SOURCE = lua_source(__package__, "activation")
SCRIPT_MAX = 1000  # activation.lua's bound on learners per call


@dataclass(frozen=True, slots=True)
class Step:
    action: Action
    count: int = 0  # learners to deactivate or reactivate (for `create`: missing ones)


def decide(target: int | None, *, hold: bool, paused: bool, learners: int, inactive: int) -> Step:
    """What the population needs next. Deactivation only under `hold` (a target below the
    population without it only stops onboarding); reactivation before any creation (the
    inactive learners exist already, so they cost no memory); while onboarding is paused
    nothing is added (neither reactivated nor created), but a hold still throttles: it sheds
    load, which is what a pause wants too."""
    if target is None:
        return Step("none")
    active = learners - inactive
    if active > target:
        return Step("deactivate", active - target) if hold else Step("none")
    if active == target or paused:
        return Step("none")
    if inactive > 0:
        return Step("reactivate", min(target - active, inactive))
    return Step("create", target - learners)


@dataclass(frozen=True, slots=True)
class Candidate:
    position: int  # in the fleet's creation order
    shard: int
    learner: str


class Activation:
    def __init__(self, redis: FleetRedis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._script = redis.register_script(_SOURCE)
        self.deactivated = 0
        self.reactivated = 0

    def _candidates(self, shard: int, rows: Any) -> list[Candidate]:
        shards = self.keys.shards
        return [
            Candidate(position(int(seq), shard, shards), shard, learner)
            for learner, seq in scored(rows)
        ]

    async def newest_active(self, k: int) -> list[Candidate]:
        """The `k` newest active learners, newest first. In each shard the inactive learners
        are a contiguous run of its creation order (deactivation always takes the newest active,
        reactivation the oldest inactive), so its active ones are those above the run's newest
        member (created since; they come first) and those below its oldest."""
        shards = list(self.keys.all_shards())
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in shards:
                pipe.zrange(self.keys.learners_inactive(s), 0, 0, withscores=True)
                pipe.zrange(self.keys.learners_inactive(s), -1, -1, withscores=True)
            bounds = await pipe.execute()
        sent: list[int] = []  # per command, its shard
        async with self.redis.pipeline(transaction=False) as pipe:
            for i, s in enumerate(shards):
                index = self.keys.learners_index(s)
                low, high = scored(bounds[2 * i]), scored(bounds[2 * i + 1])
                if not low:
                    pipe.zrevrange(index, 0, k - 1, withscores=True)
                    sent.append(s)
                    continue
                above, below = f"({int(high[0][1])}", f"({int(low[0][1])}"
                pipe.zrevrangebyscore(index, "+inf", above, start=0, num=k, withscores=True)
                pipe.zrevrangebyscore(index, below, "-inf", start=0, num=k, withscores=True)
                sent += [s, s]
            replies = await pipe.execute()
        found: list[Candidate] = []
        for s, rows in zip(sent, replies, strict=True):
            found += self._candidates(s, rows)
        return heapq.nlargest(k, found, key=lambda c: c.position)

    async def oldest_inactive(self, k: int) -> list[Candidate]:
        """The `k` oldest inactive learners, oldest first."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for s in self.keys.all_shards():
                pipe.zrange(self.keys.learners_inactive(s), 0, k - 1, withscores=True)
            replies = await pipe.execute()
        found: list[Candidate] = []
        for s, rows in zip(self.keys.all_shards(), replies, strict=True):
            found += self._candidates(s, rows)
        return heapq.nsmallest(k, found, key=lambda c: c.position)

    async def _apply(self, op: str, chosen: list[Candidate]) -> int:
        by_shard: dict[int, list[str]] = {}
        for c in chosen:
            by_shard.setdefault(c.shard, []).append(c.learner)
        calls: list[ScriptCall] = []
        for shard, learners in by_shard.items():
            for i in range(0, len(learners), SCRIPT_MAX):
                part = learners[i : i + SCRIPT_MAX]
                calls.append((self.keys.activation_keys(shard, part), [op, *part]))
        if not calls:
            return 0
        results = await evalsha_pipelined(self.redis, self._script, calls)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return sum(int(r) for r in results)

    async def deactivate(self, k: int) -> int:
        """Deactivate up to `k` of the newest active learners; returns how many changed."""
        done = await self._apply("off", await self.newest_active(k)) if k > 0 else 0
        self.deactivated += done
        return done

    async def reactivate(self, k: int) -> int:
        """Reactivate up to `k` of the oldest inactive learners; returns how many changed."""
        done = await self._apply("on", await self.oldest_inactive(k)) if k > 0 else 0
        self.reactivated += done
        return done
