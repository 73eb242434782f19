"""The leader lease on a real Redis: one leader among two, release and expiry hand over."""

from __future__ import annotations

import asyncio

from services.coach.lease import Lease


async def test_only_one_of_two_leases_leads(redis, scripts, keys):
    a = Lease(redis, keys, scripts, token="a", ttl_ms=2000)
    b = Lease(redis, keys, scripts, token="b", ttl_ms=2000)
    assert await a.try_acquire() is True
    assert await b.try_acquire() is False
    assert a.is_leader and not b.is_leader
    # Renewal keeps it.
    assert await a.try_acquire() is True
    assert await b.try_acquire() is False
    assert await redis.get(keys.coach_lease) == "a"


async def test_release_hands_over(redis, scripts, keys):
    a = Lease(redis, keys, scripts, token="a")
    b = Lease(redis, keys, scripts, token="b")
    await a.try_acquire()
    assert await b.release() is False  # not b's to release
    assert await a.release() is True
    assert not a.is_leader
    assert await b.try_acquire() is True


async def test_expiry_hands_over_and_the_old_leader_steps_down(redis, scripts, keys):
    a = Lease(redis, keys, scripts, token="a", ttl_ms=200)
    b = Lease(redis, keys, scripts, token="b", ttl_ms=200)
    await a.try_acquire()
    # a stops renewing (as if killed); its own view lapses before the key does.
    await asyncio.sleep(0.3)
    assert not a.is_leader
    assert await b.try_acquire() is True
    assert await a.try_acquire() is False


async def test_run_holds_and_releases_on_cancel(redis, scripts, keys):
    a = Lease(redis, keys, scripts, token="a", ttl_ms=300, renew_s=0.05, retry_s=0.05)
    task = asyncio.create_task(a.run())
    await asyncio.sleep(0.5)  # longer than the TTL: renewals keep it
    assert a.is_leader
    assert await redis.get(keys.coach_lease) == "a"
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert await redis.get(keys.coach_lease) is None
