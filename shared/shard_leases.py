"""Per-shard leases with fencing tokens: how the replicas of one role (the coach, reports) split
the shards among themselves, each shard worked on by one replica at a time.

Membership. Every replica beats into the role's members set (a sorted set: token -> expiry, by
Redis's clock; `shard_members.lua`), which also drops the members that stopped beating. With n
live members a replica's fair share is ceil(S / n) shards: a replica beyond S owns nothing and
stands by, which is why S bounds how many replicas can share the work.

One cycle, every `renew_ms`: beat; renew the leases held (`lease_renew`: compare the token, then
PEXPIRE, atomically); give back the shards above the fair share (a new replica then finds free
shards at its next cycle); acquire free shards up to the fair share (`shard_lease_acquire`: SET NX
PX and INCR of the shard's fence in one script, one shard = one slot). On a graceful stop every
lease is released and the member leaves, so the others take the shards at their next cycle. A
killed replica's leases lapse after `ttl_ms` and its member entry too, so its shards are
acquired again within ttl + one cycle (2.5 s with the defaults).

Safety. A holder that cannot renew (Redis away, an event-loop stall) cannot know whether it still
holds a shard, so it counts a shard owned only until its last successful renewal + ttl minus a
margin (a quarter of the ttl: the clock starts before Redis set the expiry, a renewal may be in
flight) — before any other replica could acquire it.

Fencing. That margin does not cover a holder stalled in the middle of its work (writes already
sent, or sent after the stall without looking at the clock again). So each acquisition also
increments the shard's fence counter and the new holder keeps the value as that shard's fencing
token; the writes for a shard carry the token and are refused, in the same atomic step, once the
fence moved on (the coach's store and promote script, training's commit of the coach's rounds).

The replica's view (`owned()`, `token(shard)`) is what `shared.shards.ShardOwnership` asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from shared.cancellation import stop_if_cancelled
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis
from shared.scripts import ScriptCall, evalsha_pipelined, script_source

log = get_logger(__name__)

# The share of the ttl a holder gives up at the end of each lease (see "Safety" above).
SAFETY_MARGIN = 0.25
# Giving the shards back at shutdown waits at most this long (a Redis away must not hold a
# stopping service; the leases then lapse at their ttl, as after a crash).
STOP_TIMEOUT_S = 5.0


class ShardLeaseSettings(BaseSettings):
    """The lease bounds (docs/OPERATIONS.md). A dead replica's shards are taken again within
    ttl + renew; the renewal period must leave room for a renewal to fail once and still land
    before the holder's own view lapses."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    ttl_ms: int = Field(2000, ge=100, le=60_000, validation_alias="TOOLOO_SHARD_LEASE_TTL_MS")
    # Also the period of the acquisition scan: one cycle renews, gives back and acquires.
    renew_ms: int = Field(500, ge=20, le=30_000, validation_alias="TOOLOO_SHARD_LEASE_RENEW_MS")

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> Self:
        if self.renew_ms * 2 > self.ttl_ms:
            raise ValueError(
                "TOOLOO_SHARD_LEASE_RENEW_MS must be at most half of TOOLOO_SHARD_LEASE_TTL_MS "
                f"(got {self.renew_ms} and {self.ttl_ms})"
            )
        return self


@dataclass(frozen=True, slots=True)
class LeaseRole:
    """The keys of one role's leases: the shard's lease and fence, and the members set."""

    name: str
    lease: Callable[[int], str]
    fence: Callable[[int], str]
    members: str


def coach_role(keys: Keys) -> LeaseRole:
    return LeaseRole("coach", keys.coach_lease, keys.coach_fence, keys.coach_members)


def reports_role(keys: Keys) -> LeaseRole:
    return LeaseRole("reports", keys.reports_lease, keys.reports_fence, keys.reports_members)


def new_member_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def fair_share(shards: int, members: int) -> int:
    return math.ceil(shards / max(1, members))


class ShardLeases:
    """One replica's leases of one role (implements shared.shards.ShardOwnership)."""

    def __init__(
        self,
        redis: FleetRedis,
        keys: Keys,
        role: LeaseRole,
        *,
        token: str | None = None,
        ttl_ms: int = 2000,
        renew_ms: int = 500,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.role = role
        self.member = token or new_member_token()
        self.ttl_ms = ttl_ms
        self.renew_ms = renew_ms
        self.members = 0  # live members at the last beat (0: not beaten yet)
        self._held: set[int] = set()  # shards whose lease we hold, as far as we know
        # shard -> fencing token of our latest tenure, kept after the shard is lost or given
        # back: a write still in flight carries it and Redis refuses it (the fence moved on).
        self._tokens: dict[int, int] = {}
        self._valid_until: dict[int, float] = {}  # shard -> monotonic time we may act until
        self._acquire = redis.register_script(script_source("shard_lease_acquire"))
        self._renew = redis.register_script(script_source("lease_renew"))
        self._release = redis.register_script(script_source("lease_release"))
        self._beat = redis.register_script(script_source("shard_members"))

    @classmethod
    def from_settings(
        cls, redis: FleetRedis, keys: Keys, role: LeaseRole, settings: ShardLeaseSettings, **kw: Any
    ) -> ShardLeases:
        return cls(redis, keys, role, ttl_ms=settings.ttl_ms, renew_ms=settings.renew_ms, **kw)

    # ---- ShardOwnership ------------------------------------------------------------------------
    def owned(self) -> frozenset[int]:
        now = time.monotonic()
        return frozenset(s for s, until in self._valid_until.items() if now < until)

    def token(self, shard: int) -> int | None:
        """The shard's fencing token of our latest tenure; 0 for a shard never held, which no
        fence equals (the first acquisition makes it 1), so a write carrying it is refused.
        Never None: a write of a replica of a sharded role is always fenced."""
        return self._tokens.get(shard, 0)

    def fair_share(self) -> int:
        return fair_share(self.keys.shards, self.members)

    # ---- one cycle -----------------------------------------------------------------------------
    def _granted(self, shard: int, at: float) -> None:
        self._valid_until[shard] = at + self.ttl_ms / 1000 * (1 - SAFETY_MARGIN)

    def _drop(self, shard: int) -> None:
        self._held.discard(shard)
        self._valid_until.pop(shard, None)

    async def _each(self, script: AsyncScript, calls: list[ScriptCall]) -> list[Any]:
        """One pipelined round trip of `script` over `calls` (one reply per call, in order)."""
        return await evalsha_pipelined(self.redis, script, calls)

    async def cycle(self) -> None:
        """Beat, renew, give back above the fair share, acquire up to it."""
        at = time.monotonic()
        self.members = int(
            await self._beat(keys=[self.role.members], args=[self.member, self.ttl_ms, "0"])
        )
        share = self.fair_share()
        held = sorted(self._held)
        if held:
            renewed = await self._each(
                self._renew, [([self.role.lease(s)], [self.member, self.ttl_ms]) for s in held]
            )
            for shard, ok in zip(held, renewed, strict=True):
                if int(ok) == 1:
                    self._granted(shard, at)
                else:  # the lease lapsed and someone else holds it, or nobody: ours no more
                    self._drop(shard)
                    log.info("shard_lease_lost", role=self.role.name, shard=shard)
        extra = len(self._held) - share
        if extra > 0:
            await self._give_back(random.sample(sorted(self._held), extra))
        need = share - len(self._held)
        if need > 0:
            await self._acquire_free(need)

    async def _give_back(self, shards: list[int]) -> None:
        """Stop counting `shards` as ours first, then release them (compare token, DEL)."""
        for shard in shards:
            self._drop(shard)
        await self._each(self._release, [([self.role.lease(s)], [self.member]) for s in shards])
        log.info("shard_leases_given_back", role=self.role.name, shards=shards)

    async def _acquire_free(self, need: int) -> None:
        candidates = [s for s in self.keys.all_shards() if s not in self._held]
        if not candidates:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard in candidates:
                pipe.exists(self.role.lease(shard))
            taken = await pipe.execute()
        free = [s for s, t in zip(candidates, taken, strict=True) if not int(t)]
        # A random pick: replicas scanning at once then rarely race for the same shard.
        chosen = random.sample(free, min(need, len(free)))
        if not chosen:
            return
        at = time.monotonic()
        tokens = await self._each(
            self._acquire,
            [
                ([self.role.lease(s), self.role.fence(s)], [self.member, self.ttl_ms])
                for s in chosen
            ],
        )
        gained = []
        for shard, fence in zip(chosen, tokens, strict=True):
            if int(fence) > 0:
                self._tokens[shard] = int(fence)
                self._held.add(shard)
                self._granted(shard, at)
                gained.append(shard)
        if gained:
            log.info("shard_leases_acquired", role=self.role.name, shards=sorted(gained))

    async def stop(self) -> None:
        """Release every lease and leave the members (a graceful stop)."""
        held = sorted(self._held)
        self._held.clear()
        self._valid_until.clear()
        if held:
            await self._each(self._release, [([self.role.lease(s)], [self.member]) for s in held])
        await self._beat(keys=[self.role.members], args=[self.member, self.ttl_ms, "1"])

    async def run(self) -> None:
        """Cycle every `renew_ms` until cancelled; gives everything back on the way out."""
        try:
            while True:  # bounded by task cancellation at shutdown
                stop_if_cancelled()
                try:
                    await self.cycle()
                except RedisError as exc:
                    # Nothing to undo: the shards lapse locally at their deadline (see Safety).
                    log.warning("shard_leases_redis_error", role=self.role.name, error=str(exc))
                await asyncio.sleep(self.renew_ms / 1000)
        finally:
            # Bounded: a Redis that does not answer must not keep a stopping service alive.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.stop()), STOP_TIMEOUT_S)
