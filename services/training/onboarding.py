"""Onboarding: create learners toward the population target `scale.target`.

Only one replica onboards at a time: it holds a short lease (SET NX PX, renewed each tick with the
`lease_renew` script, which checks the token so a replica never extends a lease it lost). The task
does nothing while `scale.paused` or `scale.hold` is 1. Each tick creates at most
rate × tick learners (and at most `batch_max`) in one pipelined round trip; ids are `l-<seq>` from
a counter, regions round-robin by seq.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from services.training.store import TrainingStore
from shared.fleet_totals import learner_count
from shared.keys import Keys
from shared.redis_types import FleetRedis
from shared.scripts import Scripts

LEASE_MS = 3_000


@dataclass(slots=True)
class OnboardingConfig:
    rate: float
    regions: list[str]
    batch_max: int
    tick_s: float


class Onboarder:
    def __init__(
        self,
        redis: FleetRedis,
        scripts: Scripts,
        keys: Keys,
        store: TrainingStore,
        cfg: OnboardingConfig,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.store = store
        self.cfg = cfg
        self.token = uuid.uuid4().hex
        self.leader = False
        self.created = 0
        self._carry = 0.0  # fractional learners owed by the rate between ticks

    async def _hold_lease(self) -> bool:
        if self.leader:
            renewed = await self.scripts.lease_renew(
                keys=[self.keys.onboarding_lease], args=[self.token, LEASE_MS]
            )
            self.leader = int(renewed) == 1
        if not self.leader:
            got = await self.redis.set(self.keys.onboarding_lease, self.token, nx=True, px=LEASE_MS)
            self.leader = bool(got)
        return self.leader

    async def tick(self, elapsed_s: float) -> int:
        """One step; returns how many learners were created."""
        target, hold, paused = await self.redis.hmget(self.keys.scale, ["target", "hold", "paused"])
        if paused == "1" or hold == "1" or not target:
            self._carry = 0.0
            return 0
        # A sum over the shards' indexes: S reads in one round trip, once a tick, not per learner.
        missing = int(target) - await learner_count(self.redis, self.keys)
        if missing <= 0:
            self._carry = 0.0
            return 0
        if not await self._hold_lease():
            return 0
        self._carry = min(self._carry + self.cfg.rate * elapsed_s, float(self.cfg.batch_max))
        n = min(int(self._carry), missing, self.cfg.batch_max)
        if n <= 0:
            return 0
        self._carry -= n
        last = int(await self.redis.incrby(self.keys.onboarding_seq, n))
        regions = self.cfg.regions
        specs = [(f"l-{seq}", regions[seq % len(regions)]) for seq in range(last - n + 1, last + 1)]
        made = await self.store.create_learners(specs, time.time())
        self.created += made
        return made

    async def run(self) -> None:
        """Runs until cancelled; each iteration sleeps one tick (bounded by cancellation)."""
        last = time.monotonic()
        try:
            while True:
                await asyncio.sleep(self.cfg.tick_s)
                now = time.monotonic()
                await self.tick(now - last)
                last = now
        finally:
            if self.leader:
                await self.scripts.lease_release(
                    keys=[self.keys.onboarding_lease], args=[self.token]
                )
