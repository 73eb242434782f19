"""Onboarding: move the population toward the target `scale.target`.

Only one replica onboards at a time: it holds a short lease (SET NX PX, renewed each tick with the
`lease_renew` script, which checks the token so a replica never extends a lease it lost). Each tick
does one step of activation.decide: with `scale.hold` 1 and more active learners than the target,
it deactivates the newest (at most `batch_max`); below the target it reactivates inactive ones
first, oldest first, then creates learners: at most rate × tick (and `batch_max`) in one pipelined
round trip, ids `l-<seq>` from a counter, regions round-robin by seq. While `scale.paused` is 1
nothing is added. A lease lost during a tick can make two replicas act once each: the scripts
skip a learner already changed, and the next tick corrects an overshoot (at most one batch).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from services.training.activation import Activation, decide
from services.training.store import TrainingStore
from shared.cancellation import stop_if_cancelled
from shared.fleet_totals import population
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
        self.activation = Activation(redis, keys)
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
        """One step; returns how many learners were created (deactivations and reactivations
        are counted in `activation`)."""
        target, hold, paused = await self.redis.hmget(self.keys.scale, ["target", "hold", "paused"])
        if not target:
            self._carry = 0.0
            return 0
        # Sums over the shards' indexes and inactive sets: one round trip, once a tick.
        pop = await population(self.redis, self.keys)
        step = decide(
            int(target),
            hold=hold == "1",
            paused=paused == "1",
            learners=pop.learners,
            inactive=pop.inactive,
        )
        if step.action != "create":
            self._carry = 0.0
            if step.action == "none" or not await self._hold_lease():
                return 0
            n = min(step.count, self.cfg.batch_max)
            if step.action == "deactivate":
                await self.activation.deactivate(n)
            else:
                await self.activation.reactivate(n)
            return 0
        missing = step.count
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
            while True:  # bounded by task cancellation at shutdown
                stop_if_cancelled()
                await asyncio.sleep(self.cfg.tick_s)
                now = time.monotonic()
                await self.tick(now - last)
                last = now
        finally:
            if self.leader:
                await self.scripts.lease_release(
                    keys=[self.keys.onboarding_lease], args=[self.token]
                )
