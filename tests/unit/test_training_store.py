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
    assert done.ready is False
    assert done.prepared.outcome.learner_round == 1
    assert done.prepared.outcome.trained == ["dsa", "os"]  # gaps first, topic order on a tie
    version, state, _ = await store.load("a")
    assert version == "2"  # created active by start, then one round
    assert state.rounds == 1 and state.domain("dsa").attempts == 1
    assert await redis.xlen(keys.stream_rounds(keys.shard_of("a"))) == 1
    answer = presenters.round_answer(done)
    assert answer["round"] == done.round_id and answer["learner"] == "a"
    assert answer["learnerRound"] == 1
    assert set(answer["summary"]) == {"dsa", "os"}
    second = await store.run_round("a")  # from the cache this time
    assert second.round_id > done.round_id and second.prepared.outcome.learner_round == 2
    history = await store.history("a", 10)
    assert [h["round"] for h in history] == [second.round_id, done.round_id]
    assert history[0]["n"] == 2 and history[0]["trained"] == second.prepared.outcome.trained


async def test_history_is_capped_and_limited(store):
    await store.start("a", reset=False)
    ids = [(await store.run_round("a")).round_id for _ in range(7)]
    assert [h["round"] for h in await store.history("a", 100)] == ids[::-1][:5]
    assert [h["round"] for h in await store.history("a", 2)] == ids[::-1][:2]


async def test_batch_commits_every_round_and_reports_each_failure(store):
    await store.start("a", reset=False)
    await store.start("b", reset=False)
    await store.create_learner("idle", "eu", active=False)
    batch = await store.run_batch(["a", "nobody", "b", "idle"], 3)
    assert [c.learner for c in batch.committed] == ["a", "b"]
    assert [len(c.outcomes) for c in batch.committed] == [3, 3]
    # What the API promises: ids unique fleet-wide, consecutive within one learner's commit
    # (each learner's rounds are one commit), increasing for the learner.
    answer = presenters.batch_answer(batch)
    for c in batch.committed:
        mine = [r["round"] for r in answer["rounds"] if r["learner"] == c.learner]
        assert mine == [c.first_round_id + i for i in range(3)]
    assert len({r["round"] for r in answer["rounds"]}) == 6
    again = await store.run_batch(["a"], 1)
    assert again.committed[0].first_round_id > batch.committed[0].first_round_id + 2
    assert batch.failed == [("nobody", "learner_not_found"), ("idle", "training_not_started")]
    assert (await store.load("a"))[1].rounds == 4
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
        assert [h["round"] for h in await store.history("a", 10)] == [done.round_id]
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


async def walk(store: TrainingStore, limit: int) -> list[tuple[str, int]]:
    seen: list[tuple[str, int]] = []
    cursor: int | None = 0
    for _ in range(1000):
        page, cursor = await store.list_learners(cursor, limit)
        assert len(page) <= limit
        seen += [(x.id, x.seq) for x in page]
        if cursor is None:
            return seen
        assert cursor == page[-1].seq
    raise AssertionError("the walk did not end")


async def test_list_pages_merge_every_shard_once_in_a_stable_order(store, keys):
    learners = [f"p{i}" for i in range(60)]
    for learner in learners:
        await store.create_learner(learner, "eu", active=True)
    assert len({keys.shard_of(x) for x in learners}) > 8  # spread over many shards
    for limit in (1, 7, 60, 500):
        seen = await walk(store, limit)
        assert sorted(x for x, _ in seen) == sorted(learners)  # each exactly once
        positions = [seq for _, seq in seen]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert await walk(store, 7) == await walk(store, 7)  # the same order each time
    # A shard's first learners come before any shard's second ones (the shards interleave).
    first = (await store.list_learners(0, 1))[0][0]
    assert keys.shards <= first.seq < 2 * keys.shards  # creation number 1 of some shard


async def test_a_walk_lists_every_learner_that_lives_through_it(store):
    for i in range(40):
        await store.create_learner(f"q{i}", "eu", active=True)
    seen: list[str] = []
    page, cursor = await store.list_learners(0, 10)
    seen += [x.id for x in page]
    gone = next(f"q{i}" for i in range(40) if f"q{i}" not in seen)
    await store.delete_learner(gone)
    for i in range(40, 60):  # created during the walk: listed once or not at all
        await store.create_learner(f"q{i}", "eu", active=True)
    while cursor is not None:
        page, cursor = await store.list_learners(cursor, 10)
        seen += [x.id for x in page]
    assert len(seen) == len(set(seen))
    assert {f"q{i}" for i in range(40)} - {gone} <= set(seen) and gone not in seen


async def test_a_fenced_batch_commits_only_the_shards_whose_token_holds(store, redis, keys):
    learners = [f"f{i}" for i in range(40)]
    for learner in learners:
        await store.start(learner, reset=False)
    shards = sorted({keys.shard_of(x) for x in learners})
    held, lost = shards[0], shards[1]
    await redis.set(keys.coach_fence(held), 3)
    await redis.set(keys.coach_fence(lost), 8)  # another replica took this shard since
    batch = await store.run_batch(learners, 2, fences={held: 3, lost: 7})
    fenced = {x for x in learners if keys.shard_of(x) == lost}
    assert sorted(x for x, code in batch.failed if code == "fenced") == sorted(fenced)
    assert len(batch.failed) == len(fenced)
    assert {c.learner for c in batch.committed} == set(learners) - fenced
    for learner in fenced:
        assert (await store.load(learner))[1].rounds == 0
        assert await store.history(learner, 10) == []
    answer = presenters.batch_answer(batch)
    assert {e["code"] for e in answer["errors"]} == {"fenced"}


async def test_commits_decide_readiness_with_the_cached_coach_settings(store, redis, keys):
    await store.start("a", reset=False)
    # A bar nobody reaches: once read, no commit makes the learner ready.
    await redis.hset(keys.coach_settings, mapping={"minAvgMastery": "101", "maxBelow80": "0"})
    await store.thresholds.refresh()
    batch = await store.run_batch(["a"], 50)
    assert batch.committed[0].ready is False
    # A bar everyone reaches, taken up by the next refresh (within about a second).
    await redis.hset(keys.coach_settings, mapping={"minAvgMastery": "0", "maxBelow80": "99"})
    await store.thresholds.refresh()
    assert (await store.run_batch(["a"], 1)).committed[0].ready is True


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


async def test_a_history_list_of_the_older_encoding_is_read_after_the_string(store, keys, redis):
    """A learner written before the compact history: its list still answers (after the rounds
    committed since, which go into the string), and its state, written in the older form, is
    rewritten with the history anchor at its next round."""
    import orjson

    await store.start("old", reset=False)
    raw = await redis.hget(keys.learner_state("old"), "s")
    assert '"hk"' not in raw  # no round yet: the state is as the older encoder wrote it
    legacy = [
        {"round": 7 - i, "n": 0, "ts": 1000 - i, "trained": ["dsa"], "scores": {"dsa": 50}}
        for i in range(3)
    ]
    await redis.rpush(keys.learner_history_list("old"), *(orjson.dumps(e) for e in legacy))
    assert await store.history("old", 10) == legacy
    await store.run_round("old")
    await store.run_round("old")
    got = await store.history("old", 10)
    assert [e["n"] for e in got[:2]] == [2, 1] and got[2:] == legacy
    assert await store.history("old", 3) == got[:3]
    assert '"hk"' in await redis.hget(keys.learner_state("old"), "s")
    for _ in range(4):  # the string alone reaches the cap (5): the list no longer shows
        await store.run_round("old")
    assert [e["n"] for e in await store.history("old", 10)] == [6, 5, 4, 3, 2]
