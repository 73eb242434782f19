"""Per-minute request and 5xx counts of a service, and the latency histogram of its round
endpoints, flushed to Redis for the reports service.

Counting in memory and flushing once a second keeps Redis off the request path; reports derives
the fleet's error rate and its round latency (p50/p95/p99 of what a caller waits for a round)
from these buckets. Probes (`/health`, `/ready`, `/metrics`) are not counted: the orchestrator
sends several a second, which would dilute the error rate of a fleet with little user traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from shared.histogram import bucket_of
from shared.keys import Keys
from shared.logging import get_logger
from shared.redis_types import FleetRedis

log = get_logger(__name__)
BUCKET_TTL_S = 26 * 3600  # keep a day of minutes (the reports retention) plus margin
PROBE_PATHS = frozenset({"/health", "/ready", "/metrics"})
# The endpoints that run training rounds (single and batch): their request latency is the
# fleet's "round latency" and "round time".
ROUND_ROUTES = frozenset({"/api/v1/training/round", "/api/v1/training/rounds"})
ROUND_LATENCY_PREFIX = "rlat:"  # http stats field of one bucket: rlat:<index>
ROUND_LATENCY_SUM = "rlat_sum"


class RequestStats:
    def __init__(self, service: str) -> None:
        self.service = service
        self._pending: Counter[tuple[int, str]] = Counter()
        self._lat_sum: dict[int, float] = {}

    def record(self, status: int, path: str = "", route: str = "", ms: float | None = None) -> None:
        if path in PROBE_PATHS:
            return
        minute = int(time.time() // 60)
        self._pending[(minute, f"{self.service}:requests")] += 1
        if status >= 500:
            self._pending[(minute, f"{self.service}:errors")] += 1
        if ms is not None and route in ROUND_ROUTES:
            self._pending[(minute, f"{ROUND_LATENCY_PREFIX}{bucket_of(ms)}")] += 1
            self._lat_sum[minute] = self._lat_sum.get(minute, 0.0) + ms

    async def flush(self, redis: FleetRedis, keys: Keys) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        sums, self._lat_sum = self._lat_sum, {}
        pipe = redis.pipeline(transaction=False)
        for (minute, field), count in pending.items():
            key = keys.http_stats(minute)
            pipe.hincrby(key, field, count)
            pipe.expire(key, BUCKET_TTL_S)
        for minute, total in sums.items():
            pipe.hincrbyfloat(keys.http_stats(minute), ROUND_LATENCY_SUM, round(total, 3))
        try:
            await pipe.execute()
        except Exception as exc:  # Redis down: keep the counts for the next flush
            self._pending.update(pending)
            for minute, total in sums.items():
                self._lat_sum[minute] = self._lat_sum.get(minute, 0.0) + total
            log.warning("request_stats_flush_failed", error=str(exc))

    async def run(self, redis: FleetRedis, keys: Keys, interval_s: float = 1.0) -> None:
        while True:  # bounded by task cancellation at shutdown
            await asyncio.sleep(interval_s)
            await self.flush(redis, keys)
