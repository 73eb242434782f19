"""The scale endpoint's memory budget against a real Redis: bytes per learner follow what the
learners' keys hold (MEMORY USAGE of every key of a sample), the default applies with no learner,
a target at or below the population is never refused, no maxmemory means no refusal, and a growth
that does not fit the fullest master is refused with its figures."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.training.store import TrainingStore
from services.web.memory_budget import DEFAULT_BYTES_PER_LEARNER, budget, bytes_per_learner


@pytest_asyncio.fixture
async def store(redis, scripts, keys) -> AsyncIterator[TrainingStore]:
    store = TrainingStore(redis, scripts, keys, history_limit=100)
    await store.curriculum.init()
    yield store
    await store.aclose()


@pytest.mark.backends("single", "cluster")
async def test_bytes_per_learner_follow_the_keys(redis, keys, store) -> None:
    assert await bytes_per_learner(redis, keys) == (DEFAULT_BYTES_PER_LEARNER, 0)
    ids = [f"m-{i}" for i in range(40)]
    await store.create_learners([(x, "eu") for x in ids], time.time())
    fresh, measured = await bytes_per_learner(redis, keys)
    assert measured == 16  # bounded sample
    # Independently: MEMORY USAGE of every key of one learner is below the per-learner figure
    # of fresh learners plus their index shares, and a learner's history makes it grow.
    one = sum([await redis.memory_usage(k) or 0 for k in keys.learner_keys(ids[0])])
    assert 0 < one < fresh
    await store.run_batch(ids, 20)
    trained, _ = await bytes_per_learner(redis, keys)
    assert trained > fresh + 20 * 20  # twenty history entries of more than 20 bytes each


async def test_budget_refuses_only_growth_that_does_not_fit(redis, keys, store) -> None:
    await store.create_learners([(f"b-{i}", "eu") for i in range(10)], time.time())
    per, _ = await bytes_per_learner(redis, keys)
    unbounded = await budget(redis, keys, 1_000_000)
    assert unbounded.fits and unbounded.bytes_available is None  # no maxmemory: no refusal
    old = (await redis.config_get("maxmemory"))["maxmemory"]
    used = int((await redis.info("memory"))["used_memory"])
    try:
        # Room for about 1,000 learners: used memory drifts a little meanwhile (client buffers).
        await redis.config_set("maxmemory", used + 1_000 * per)
        fits = await budget(redis, keys, 10 + 50)
        assert fits.fits and fits.bytes_needed == 50 * per
        refused = await budget(redis, keys, 10 + 10_000)
        assert not refused.fits
        details = refused.details()
        assert details["bytes_needed"] == 10_000 * per
        assert details["bytes_per_learner"] == per and details["learners_to_add"] == 10_000
        assert 0 < details["bytes_available"] < details["bytes_needed"]
        # A throttle (at or below the population) is never refused, even with no room at all.
        await redis.config_set("maxmemory", 1)
        assert (await budget(redis, keys, 10)).fits
        assert (await budget(redis, keys, 3)).fits
    finally:
        await redis.config_set("maxmemory", old)
