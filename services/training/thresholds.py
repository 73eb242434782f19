"""The readiness thresholds training passes to every round commit, cached.

They live in the coach's settings hash, a fleet-wide key in another Cluster slot than any
learner's shard, so the commit script cannot read them: training reads them and passes them as
arguments. Reading them per commit would put a fleet-wide key on the hot path (every round of
every replica on one Redis node); instead each process keeps the last value and a background task
reads it again every MAX_AGE_S (one HMGET a second per replica, whatever the load). A change of
the coach's settings therefore decides readiness from about a second after it is made (at most
MAX_AGE_S plus one read), in every training replica. A store used without the task (a tool, a
test) refreshes on use once its value is older than that. Training reads them once before it
serves; when the hash lacks a field, the defaults of shared/readiness.py apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from shared.cancellation import stop_if_cancelled
from shared.keys import Keys
from shared.logging import get_logger
from shared.readiness import (
    DEFAULT_MAX_BELOW,
    DEFAULT_MIN_AVG_MASTERY,
    ReadinessThresholds,
    read_thresholds,
)
from shared.redis_types import FleetRedis

log = get_logger(__name__)

MAX_AGE_S = 1.0


class ThresholdsCache:
    def __init__(self, redis: FleetRedis, keys: Keys, max_age_s: float = MAX_AGE_S) -> None:
        self.redis = redis
        self.keys = keys
        self.max_age_s = max_age_s
        self._value = ReadinessThresholds(DEFAULT_MIN_AVG_MASTERY, DEFAULT_MAX_BELOW)
        self._read_at = float("-inf")  # monotonic time of the last successful read
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> ReadinessThresholds:
        """Read the coach's settings now (a failure keeps the previous value and is raised)."""
        self._value = await read_thresholds(self.redis, self.keys)
        self._read_at = time.monotonic()
        return self._value

    def get(self) -> ReadinessThresholds:
        """The cached thresholds; when they are older than max_age_s, one background refresh is
        started (at most one in flight) and this call still answers the cached value."""
        if time.monotonic() - self._read_at > self.max_age_s and (
            self._task is None or self._task.done()
        ):
            self._task = asyncio.get_running_loop().create_task(self._refresh_quietly())
        return self._value

    async def run(self) -> None:
        """Refresh every max_age_s until cancelled (the app's background task)."""
        while True:  # bounded by cancellation at shutdown
            stop_if_cancelled()
            await asyncio.sleep(self.max_age_s)
            await self._refresh_quietly()

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # a Redis outage: keep the last value, try again after max_age_s
            self._read_at = time.monotonic()
            log.warning("readiness_thresholds_refresh_failed", error=str(exc))

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
