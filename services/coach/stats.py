"""The coach's counters and figures in Redis: counters (`keys.coach_stats`, HINCRBY), throughput
as per-second counters (`keys.coach_throughput(sec)`, summed over the last minute), coverage from
`keys.coach_coached` against the queue, and the meta trigger delays.

Everything is in Redis, so the figures survive a coach restart and a standby that takes over
continues them rather than starting from zero.
"""

from __future__ import annotations

import math
import time
from typing import Any

from redis.asyncio import Redis

from shared.keys import Keys

THROUGHPUT_WINDOW_S = 60
THROUGHPUT_TTL_S = 120
COVERAGE_WINDOW_MS = 60_000
COVERAGE_SAMPLE = 5000  # coached learners checked against the queue per status call
META_DELAYS_KEPT = 1000


def record_rounds(pipe: Any, keys: Keys, rounds: int, now_s: float, counter: str) -> None:
    """Add `rounds` to the counter `counter` and to this second's throughput."""
    if rounds <= 0:
        return
    key = keys.coach_throughput(int(now_s))
    pipe.hincrby(keys.coach_stats, counter, rounds)
    pipe.incrby(key, rounds)
    pipe.expire(key, THROUGHPUT_TTL_S)


def record_coached(pipe: Any, keys: Keys, learners: list[str], now_ms: int) -> None:
    if learners:
        pipe.zadd(keys.coach_coached, dict.fromkeys(learners, now_ms))
    # Pruned every tick, so the set holds about one minute of coached learners.
    pipe.zremrangebyscore(keys.coach_coached, "-inf", now_ms - COVERAGE_WINDOW_MS)


async def rounds_per_min(redis: Redis, keys: Keys, now_s: float | None = None) -> int:
    now = int(now_s if now_s is not None else time.time())
    names = [keys.coach_throughput(s) for s in range(now - THROUGHPUT_WINDOW_S + 1, now + 1)]
    return sum(int(v) for v in await redis.mget(names) if v)


async def coverage(redis: Redis, keys: Keys, now_ms: int | None = None) -> dict[str, Any]:
    """Share of the learners needing coaching (the queue) that were coached in the last minute.

    Redis 6.2 has no ZINTERCARD, so the work is bounded by sampling from the queue side: the
    whole queue when it holds at most COVERAGE_SAMPLE learners, else a uniform random sample
    (ZRANDMEMBER); ZMSCORE against `coach:coached` tells which were coached since a minute ago.
    (Sampling the coached set instead would be biased: its oldest members are the ones most
    likely to have become ready and left the queue.)"""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    since = now - COVERAGE_WINDOW_MS
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.coach_queue)
        pipe.zcount(keys.coach_coached, since, "+inf")
        needing, coached = await pipe.execute()
    needing, coached = int(needing), int(coached)
    if needing == 0:
        # 0 of 0 is not a share (reports answers None too).
        return {"ratio": None, "needing": 0, "coachedLastMinute": coached, "estimated": False}
    estimated = needing > COVERAGE_SAMPLE
    if estimated:
        sample = await redis.zrandmember(keys.coach_queue, COVERAGE_SAMPLE)
    else:
        sample = await redis.zrange(keys.coach_queue, 0, COVERAGE_SAMPLE - 1)
    if not sample:
        return {"ratio": None, "needing": 0, "coachedLastMinute": coached, "estimated": False}
    scores = await redis.zmscore(keys.coach_coached, sample)
    hits = sum(1 for s in scores if s is not None and s >= since)
    return {
        "ratio": round(hits / len(sample), 4),
        "needing": needing,
        "coachedLastMinute": coached,
        "estimated": estimated,
    }


def record_meta_delay(pipe: Any, keys: Keys, learner: str, delay_ms: float) -> None:
    value = round(delay_ms, 3)
    pipe.lpush(keys.coach_meta_delays, value)
    pipe.ltrim(keys.coach_meta_delays, 0, META_DELAYS_KEPT - 1)
    pipe.hset(keys.coach_meta_delay_by_learner, learner, value)
    pipe.hincrby(keys.coach_stats, "metaTriggers", 1)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


async def meta_delays(redis: Redis, keys: Keys) -> dict[str, Any]:
    raw = await redis.lrange(keys.coach_meta_delays, 0, META_DELAYS_KEPT - 1)
    values = [float(v) for v in raw]
    ordered = sorted(values)
    return {
        "p50": percentile(ordered, 50),
        "p99": percentile(ordered, 99),
        "last": values[0] if values else None,
        "samples": len(values),
    }
