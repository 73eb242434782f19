"""Concurrent single rounds of one learner share one commit (services/training/coalesce.py),
against a real redis-server: each request still gets its own round, id and answer, a request
whose caller went away is left out, a conflicting group is recomputed whole, and a failing group
fails only its own requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.training.coalesce import RoundCoalescer
from services.training.curriculum import Curriculum
from services.training.store import CommittedRound, LearnerRead, TrainingStore
from shared.learner_state import LearnerState, decode, encode


@pytest_asyncio.fixture
async def store(redis, scripts, keys) -> AsyncIterator[TrainingStore]:
    store = TrainingStore(redis, scripts, keys, history_limit=100)
    await store.curriculum.init()
    yield store
    await store.aclose()


async def rounds_in_history(store: TrainingStore, learner: str) -> list[int]:
    return [entry["n"] for entry in reversed(await store.history(learner, 100))]


async def test_concurrent_rounds_of_one_learner_share_commits_and_each_gets_its_own(store):
    await store.create_learner("solo", "eu", active=True)
    done = await asyncio.gather(*(store.run_round("solo") for _ in range(24)))
    assert all(isinstance(d, CommittedRound) for d in done)
    learner_rounds = sorted(d.prepared.outcome.learner_round for d in done)
    assert learner_rounds == list(range(1, 25))  # each request its own round, none twice
    ids = sorted(d.round_id for d in done)
    assert len(set(ids)) == 24 and ids == list(range(ids[0], ids[0] + 24))  # one shard's ids
    # Rounds increase with ids, and the history holds each round once, in order.
    by_id = sorted(done, key=lambda d: d.round_id)
    assert [d.prepared.outcome.learner_round for d in by_id] == list(range(1, 25))
    assert await rounds_in_history(store, "solo") == list(range(1, 25))
    # Fewer commits than requests: the ones that queued behind a commit went together.
    assert store.coalescer.groups < 24 and store.coalescer.coalesced > 0
    # Each answer shows the learner after its own round.
    assert [d.prepared.state.rounds for d in by_id] == list(range(1, 25))
    _, state, _ = await store.load("solo")
    assert state.rounds == 24
    assert len(store.coalescer) == 0  # nothing left queued


async def test_a_request_whose_caller_went_away_is_left_out(store):
    await store.create_learner("gone", "eu", active=True)
    first = asyncio.create_task(store.run_round("gone"))
    await asyncio.sleep(0)  # the first request is in flight; the next ones queue behind it
    queued = [asyncio.create_task(store.run_round("gone")) for _ in range(5)]
    await asyncio.sleep(0)
    queued[2].cancel()  # its client disconnected before its group was computed
    results = await asyncio.gather(first, *queued, return_exceptions=True)
    assert isinstance(results[3], asyncio.CancelledError)
    committed = [r for r in results if isinstance(r, CommittedRound)]
    assert len(committed) == 5
    assert await rounds_in_history(store, "gone") == [1, 2, 3, 4, 5]
    assert sorted(r.prepared.outcome.learner_round for r in committed) == [1, 2, 3, 4, 5]


class ConflictingStore(TrainingStore):
    """Before its first group commit, another writer (meta, another replica) changes the
    learner with the version-checked cas_state script, so that commit conflicts."""

    interleaved = 0

    async def _commit_group(
        self,
        learner: str,
        read: LearnerRead,
        state: LearnerState,
        curriculum: Curriculum,
        starteds: list[float],
    ) -> list[CommittedRound] | LearnerRead:
        if not self.interleaved:
            self.interleaved += 1
            v, raw = await self.redis.hmget(self.keys.learner_state(learner), ["v", "s"])
            other = decode(raw)
            other.transfer += 0.25
            res = await self.scripts.cas_state(
                keys=self.keys.cas_state_keys(learner), args=[v, encode(other), learner, "keep"]
            )
            assert res[0] == 1
        return await super()._commit_group(learner, read, state, curriculum, starteds)


async def test_a_conflicting_group_is_recomputed_whole_on_the_other_writers_state(
    redis, scripts, keys
):
    store = ConflictingStore(redis, scripts, keys)
    await store.curriculum.init()
    try:
        await store.create_learner("c", "eu", active=True)
        await store.run_round("c")  # the state is cached now: the group starts from the cache
        t = time.perf_counter()
        done = await store._run_group("c", [t, t, t])
        assert store.interleaved == 1
        assert [d.prepared.outcome.learner_round for d in done] == [2, 3, 4]
        assert [d.round_id - done[0].round_id for d in done] == [0, 1, 2]
        _, state, _ = await store.load("c")
        assert state.rounds == 4 and state.transfer >= 0.25  # the other write is kept
        assert await rounds_in_history(store, "c") == [1, 2, 3, 4]
    finally:
        await store.aclose()


async def test_a_failing_group_fails_only_its_own_requests():
    calls: list[list[float]] = []
    release = asyncio.Event()

    async def run_group(learner: str, starteds: list[float]) -> list[str]:
        calls.append(starteds)
        if len(calls) == 1:
            await release.wait()  # the first commit is in flight while the others queue
            return ["first"]
        if len(calls) == 2:
            raise RuntimeError("redis went away")
        return [f"ok{i}" for i in range(len(starteds))]

    coalescer: RoundCoalescer[str] = RoundCoalescer(run_group, max_group=3)
    first = asyncio.create_task(coalescer.submit("l", 0.0))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(coalescer.submit("l", float(i))) for i in range(1, 6)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[0] == "first"
    # Requests 1-3 formed the failing group; 4 and 5 the next one, committed.
    assert [type(r) for r in results[1:4]] == [RuntimeError] * 3
    assert results[4:] == ["ok0", "ok1"]
    assert [len(c) for c in calls] == [1, 3, 2]
    assert len(coalescer) == 0


@pytest.mark.parametrize("max_group", [1])
async def test_a_group_size_of_one_commits_each_round_alone(redis, scripts, keys, max_group):
    store = TrainingStore(redis, scripts, keys, coalesce_max=max_group)
    await store.curriculum.init()
    try:
        await store.create_learner("one", "eu", active=True)
        await asyncio.gather(*(store.run_round("one") for _ in range(6)))
        assert store.coalescer.coalesced == 0 and store.coalescer.groups == 6
        assert await rounds_in_history(store, "one") == [1, 2, 3, 4, 5, 6]
    finally:
        await store.aclose()
