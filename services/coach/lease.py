"""The leader lease: only the replica holding `keys.coach_lease` runs the loop and consumes meta
triggers.

The lease is a key set with NX and a TTL to a random instance token; the holder renews it every
`renew_s` with the `lease_renew` script (compare token, then PEXPIRE, atomically) and releases it
with `lease_release` on a graceful stop. A standby retries every `retry_s`, so when the leader is
killed the lease lapses after at most `ttl_ms` and a standby holds it a moment later.

Safety: a holder that cannot reach Redis cannot know whether it still holds the lease, so it
counts itself leader only until its last successful renewal plus the TTL minus a margin — before
any other replica could acquire it.

Fencing: that margin does not cover a leader stalled in the middle of a tick (an event-loop
stall, a partition) whose writes land after a standby took over. So each acquisition
(`lease_acquire`, beside this module) also increments `keys.coach_fence` and the new holder
keeps the value as its fencing token; the leader's writes (services/coach/store.py) check in
the same atomic step that the fence still equals their token and are refused (`Fenced`) once a
newer holder exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import text_or_none
from shared.scripts import Scripts, lua_source

log = get_logger(__name__)


class Leadership(Protocol):
    """Whether this replica may act as the leader now."""

    @property
    def is_leader(self) -> bool: ...


class Fencing(Protocol):
    """The fencing token the leader's writes carry (None: never acquired, or lost)."""

    @property
    def fence_token(self) -> int | None: ...


def new_instance_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        scripts: Scripts,
        *,
        token: str | None = None,
        ttl_ms: int = 2000,
        renew_s: float = 0.5,
        retry_s: float = 0.25,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.token = token or new_instance_token()
        self.ttl_ms = ttl_ms
        self.renew_s = renew_s
        self.retry_s = retry_s
        self._valid_until = 0.0  # monotonic time until which we may act as leader
        # The fencing token of our current tenure: kept past a local expiry (Redis decides
        # whether a write with it is stale), dropped when another holder is seen.
        self._fence: int | None = None
        self._acquire = redis.register_script(lua_source(__package__, "lease_acquire"))

    @property
    def fence_token(self) -> int | None:
        return self._fence

    @property
    def is_leader(self) -> bool:
        return time.monotonic() < self._valid_until

    def _granted(self, at: float) -> None:
        # Margin of a quarter TTL: our clock started before Redis set the TTL, and a renewal
        # may be in flight; stepping down early is safe, acting late is not.
        self._valid_until = at + self.ttl_ms / 1000 * 0.75

    async def try_acquire(self) -> bool:
        """Acquire the lease, or renew it if we hold it. Returns whether we hold it now."""
        at = time.monotonic()
        try:
            if self.is_leader or await self.redis.get(self.keys.coach_lease) == self.token:
                held = bool(
                    await self.scripts.lease_renew(
                        keys=[self.keys.coach_lease], args=[self.token, self.ttl_ms]
                    )
                )
                if not held:  # renewal failed: someone else holds it (we lapsed); try anew
                    held = await self._set_nx()
            else:
                held = await self._set_nx()
        except RedisError as exc:
            log.warning("coach_lease_redis_error", error=str(exc))
            return self.is_leader
        was = self.is_leader
        if held:
            self._granted(at)
        else:
            self._valid_until = 0.0
            self._fence = None
        if was != held:
            log.info("coach_lease_changed", leader=held, instance=self.token)
        return held

    async def _set_nx(self) -> bool:
        """Acquire as a new holder: SET NX and the next fencing token in one script."""
        fence = int(
            await self._acquire(
                keys=[self.keys.coach_lease, self.keys.coach_fence], args=[self.token, self.ttl_ms]
            )
        )
        if fence:
            self._fence = fence
        return fence > 0

    async def release(self) -> bool:
        self._valid_until = 0.0
        self._fence = None
        try:
            return bool(
                await self.scripts.lease_release(keys=[self.keys.coach_lease], args=[self.token])
            )
        except RedisError:
            return False

    async def holder(self) -> str | None:
        return text_or_none(await self.redis.get(self.keys.coach_lease))

    async def run(self) -> None:
        """Hold or wait for the lease until cancelled; releases it on the way out."""
        try:
            while True:  # bounded by task cancellation at shutdown
                held = await self.try_acquire()
                await asyncio.sleep(self.renew_s if held else self.retry_s)
        finally:
            if self.is_leader:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.release())
