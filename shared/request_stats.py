"""Per-minute request and 5xx counts of a service, flushed to Redis for the reports service.

Counting in memory and flushing once a second keeps Redis off the request path; reports derives
the fleet's error rate from these buckets.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from redis.asyncio import Redis

from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis

log = get_logger(__name__)
BUCKET_TTL_S = 26 * 3600  # keep a day of minutes (the reports retention) plus margin


class RequestStats:
    def __init__(self, service: str) -> None:
        self.service = service
        self._pending: Counter[tuple[int, str]] = Counter()

    def record(self, status: int) -> None:
        minute = int(time.time() // 60)
        self._pending[(minute, "requests")] += 1
        if status >= 500:
            self._pending[(minute, "errors")] += 1

    async def flush(self, redis: FleetRedis, keys: Keys) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        pipe = redis.pipeline(transaction=False)
        for (minute, kind), count in pending.items():
            key = keys.http_stats(minute)
            pipe.hincrby(key, f"{self.service}:{kind}", count)
            pipe.expire(key, BUCKET_TTL_S)
        try:
            await pipe.execute()
        except Exception as exc:  # Redis down: keep the counts for the next flush
            self._pending.update(pending)
            log.warning("request_stats_flush_failed", error=str(exc))

    async def run(self, redis: Redis, keys: Keys, interval_s: float = 1.0) -> None:
        while True:  # bounded by task cancellation at shutdown
            await asyncio.sleep(interval_s)
            await self.flush(redis, keys)
