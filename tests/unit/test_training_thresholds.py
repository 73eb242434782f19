"""Training's cached readiness thresholds: the coach's settings as last read, refreshed by a
background task, the defaults until a field is set, the last value kept through a failed read."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from services.training.thresholds import ThresholdsCache
from shared.keys import Keys
from shared.readiness import DEFAULT_MAX_BELOW, DEFAULT_MIN_AVG_MASTERY


async def until(check, what: str, tries: int = 200) -> None:
    for _ in range(tries):  # bounded
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never: {what}")


async def test_the_background_task_takes_up_a_settings_change(redis: Redis, keys: Keys) -> None:
    cache = ThresholdsCache(redis, keys, max_age_s=0.05)
    first = cache.get()
    assert (first.min_avg, first.max_below) == (DEFAULT_MIN_AVG_MASTERY, DEFAULT_MAX_BELOW)
    task = asyncio.create_task(cache.run())
    try:
        await redis.hset(keys.coach_settings, mapping={"minAvgMastery": "60", "maxBelow80": "1"})
        await until(lambda: cache.get().min_avg == 60 and cache.get().max_below == 1, "60/1")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_stale_value_is_refreshed_on_use_without_the_task(redis: Redis, keys: Keys) -> None:
    cache = ThresholdsCache(redis, keys, max_age_s=0.05)
    await cache.refresh()
    await redis.hset(keys.coach_settings, "minAvgMastery", "50")
    await until(lambda: cache.get().min_avg == 50, "refreshed on use")
    await cache.aclose()


async def test_a_failed_read_keeps_the_last_value(redis: Redis, keys: Keys) -> None:
    await redis.hset(keys.coach_settings, "minAvgMastery", "55")
    cache = ThresholdsCache(redis, keys, max_age_s=0.05)
    await cache.refresh()
    broken = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))  # nothing listens
    cache.redis = broken
    await cache._refresh_quietly()
    assert cache.get().min_avg == 55
    await cache.aclose()
    await broken.aclose()
