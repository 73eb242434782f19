"""The training store in-process against a real redis-server: learners, single and batched
rounds, version conflicts retried from the state the commit returns, and the domain errors (with
the HTTP answer the error table gives them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.training import presenters
from services.training.curriculum_store import TopicExists
from services.training.store import (
    ROUND_MAX_ATTEMPTS,
    CommittedRound,
    LearnerRead,
    PreparedRound,
    TrainingNotStarted,
    TrainingStore,
)
from shared.domain_errors import LearnerExists, LearnerNotFound, VersionConflict
from shared.errors import api_error_of
from shared.learner_state import decode, encode


class InterleavingStore(TrainingStore):
    """Before each of its first `interleave` commits, another writer (meta, another replica)
    changes the learner's state with the version-checked cas_state script."""

    def __init__(self, *args, interleave: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.interleave = interleave
        self.commits = 0

    async def commit(self, prepared: PreparedRound, started: float) -> CommittedRound | LearnerRead:
        self.commits += 1
        if self.commits <= self.interleave:
            learner = prepared.learner
            v, raw = await self.redis.hmget(self.keys.learner_state(learner), ["v", "s"])
            state = decode(raw)
            state.transfer += 0.01
            res = await self.scripts.cas_state(
                keys=self.keys.cas_state_keys(learner), args=[v, encode(state), learner, "keep"]
            )
            assert res[0] == 1
        return await super().commit(prepared, started)


@pytest_asyncio.fixture
async def store(redis, scripts, keys) -> AsyncIterator[TrainingStore]:
    store = TrainingStore(redis, scripts, keys, history_limit=5)
    await store.curriculum.init()
    yield store
    await store.aclose()


async def interleaving(redis, scripts, keys, interleave: int) -> TrainingStore:
    store = InterleavingStore(redis, scripts, keys, interleave=interleave)
    await store.curriculum.init()
    return store


async def test_create_load_and_refuse_a_taken_id(store):
    state = await store.create_learner("a", "eu", active=True)
    assert state.id == "a" and state.region == "eu" and state.active
    version, loaded, ready = await store.load("a")
    assert version == "1" and loaded.seed == state.seed and ready is False
    with pytest.raises(LearnerExists):
        await store.create_learner("a", "us", active=False)
    assert (await store.load("a"))[1].region == "eu"
    assert await store.count_learners() == 1


async def test_a_round_commits_state_history_and_answer(store, keys, redis):
    await store.start("a", reset=False)
    done = await store.run_round("a")
    assert done.round_id == 1 and done.ready is False
    assert done.prepared.outcome.learner_round == 1
    assert done.prepared.outcome.trained == ["dsa", "os"]  # gaps first, topic order on a tie
    version, state, _ = await store.load("a")
    assert version == "2"  # created active by start, then one round
    assert state.rounds == 1 and state.domain("dsa").attempts == 1
    assert await redis.xlen(keys.stream_rounds) == 1
    answer = presenters.round_answer(done)
    assert answer["round"] == 1 and answer["learner"] == "a" and answer["learnerRound"] == 1
    assert set(answer["summary"]) == {"dsa", "os"}
    second = await store.run_round("a")  # from the cache this time
    assert second.round_id == 2 and second.prepared.outcome.learner_round == 2
    history = await store.history("a", 10)
    assert [h["round"] for h in history] == [2, 1]
    assert history[0]["n"] == 2 and history[0]["trained"] == second.prepared.outcome.trained


async def test_history_is_capped_and_limited(store):
    await store.start("a", reset=False)
    for _ in range(7):
        await store.run_round("a")
    assert [h["round"] for h in await store.history("a", 100)] == [7, 6, 5, 4, 3]
    assert [h["round"] for h in await store.history("a", 2)] == [7, 6]


async def test_batch_commits_every_round_and_reports_each_failure(store):
    await store.start("a", reset=False)
    await store.start("b", reset=False)
    await store.create_learner("idle", "eu", active=False)
    batch = await store.run_batch(["a", "nobody", "b", "idle"], 3)
    assert [c.learner for c in batch.committed] == ["a", "b"]
    assert [len(c.outcomes) for c in batch.committed] == [3, 3]
    ids = sorted(c.first_round_id + i for c in batch.committed for i in range(3))
    assert ids == [1, 2, 3, 4, 5, 6]  # fleet-wide ids, contiguous per learner
    assert batch.failed == [("nobody", "learner_not_found"), ("idle", "training_not_started")]
    assert (await store.load("a"))[1].rounds == 3
    answer = presenters.batch_answer(batch)
    assert answer["committed"] == 6 and len(answer["rounds"]) == 6
    assert answer["errors"][0] == {
        "learner": "nobody",
        "code": "learner_not_found",
        "message": "Learner not found",
    }


async def test_a_concurrent_write_is_kept_and_the_round_recomputed(redis, scripts, keys):
    store = await interleaving(redis, scripts, keys, interleave=2)
    try:
        await store.start("a", reset=False)
        before = (await store.load("a"))[1].transfer
        done = await store.run_round("a")
        assert store.commits == 3  # two conflicts, then the commit
        _, state, _ = await store.load("a")
        assert state.rounds == 1  # the round applied once
        assert state.transfer == pytest.approx(before + 0.02)  # both outside writes kept
        assert done.round_id == 1
    finally:
        await store.aclose()


async def test_conflicts_past_the_bound_raise_version_conflict(redis, scripts, keys):
    store = await interleaving(redis, scripts, keys, interleave=ROUND_MAX_ATTEMPTS)
    try:
        await store.start("a", reset=False)
        with pytest.raises(VersionConflict) as raised:
            await store.run_round("a")
        assert store.commits == ROUND_MAX_ATTEMPTS
        assert (await store.load("a"))[1].rounds == 0
        api = api_error_of(raised.value)
        assert api.status == 409 and api.code == "version_conflict"
    finally:
        await store.aclose()


async def test_unknown_and_unstarted_learners_raise_domain_errors(store):
    for call in (
        store.run_round("nobody"),
        store.load("nobody"),
        store.history("nobody", 5),
        store.delete_learner("nobody"),
        store.update_settings("nobody", {"maxParallel": 2}),
    ):
        with pytest.raises(LearnerNotFound):
            await call
    api = api_error_of(LearnerNotFound("nobody"))
    assert api.status == 404
    assert api.body() == {
        "ok": False,
        "error": {
            "code": "learner_not_found",
            "message": "Learner 'nobody' not found",
            "details": None,
        },
    }
    await store.create_learner("idle", "eu", active=False)
    with pytest.raises(TrainingNotStarted) as raised:
        await store.run_round("idle")
    assert api_error_of(raised.value).status == 409
    assert api_error_of(LearnerExists("x")).status == 409


async def test_delete_erases_the_learner_and_its_cached_state(store, redis, keys):
    await store.start("a", reset=False)
    await store.run_round("a")
    assert len(store.cache) == 1
    await store.delete_learner("a")
    assert len(store.cache) == 0
    assert not await redis.exists(keys.learner_state("a"), keys.learner_history("a"))
    with pytest.raises(LearnerNotFound):
        await store.run_round("a")
    assert await store.count_learners() == 0


async def test_list_pages_by_creation_order(store):
    for learner in ("a", "b", "c"):
        await store.create_learner(learner, "eu", active=True)
    page, cursor = await store.list_learners(0, 2)
    assert [x.id for x in page] == ["a", "b"] and cursor == page[-1].seq
    rest, end = await store.list_learners(cursor, 2)
    assert [x.id for x in rest] == ["c"] and end is None


async def test_start_is_idempotent_and_reset_clears_progress(store):
    await store.start("a", reset=False)
    await store.run_round("a")
    assert (await store.start("a", reset=False)).domain("dsa").attempts == 1
    state = await store.start("a", reset=True)
    assert state.domains == {} and (await store.load("a"))[1].domains == {}


async def test_topics_need_force_to_be_replaced(store):
    problems = [{"problem": "Why?", "keywords": ["because"]}]
    assert await store.curriculum.add_topic("x", "X", problems, False, False) is False
    with pytest.raises(TopicExists):
        await store.curriculum.add_topic("x", "X", problems, False, False)
    assert await store.curriculum.add_topic("x", "Y", problems, False, True) is True
    assert store.curriculum.current.get("x").name == "Y"


async def test_readiness_thresholds_default_and_follow_the_coach_settings(store, redis, keys):
    defaults = await store.readiness_thresholds()
    assert (defaults.min_avg, defaults.max_below) == (75.0, 3)
    await redis.hset(keys.coach_settings, mapping={"minAvgMastery": "60", "maxBelow80": "junk"})
    read = await store.readiness_thresholds()
    assert (read.min_avg, read.max_below) == (60.0, 3)
