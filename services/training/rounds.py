"""Training rounds: the pure round computation, and the store that reads learner state from Redis,
computes, and commits through the shared atomic scripts.

Concurrency. Rounds for one learner inside one process are serialised by a per-learner
asyncio.Lock held only around read → compute → commit (locks are dropped when nobody holds or
waits for them, so the dict is bounded by the requests in flight). Across replicas (and for the
batch path, which does not take the locks) the version check inside `commit_rounds` refuses a
stale write and returns the current version and state, from which we recompute without another
read; after MAX_ATTEMPTS conflicts the caller gets a clear 409. So no update is ever lost.

Hot path. A single round reads the learner from an in-process cache (state_cache.py: why a stale
entry is safe) and its commit goes through an auto-pipeline (pipelining.py) shared by every request
of the event-loop turn: one round = one EVALSHA, sent in a batch with the others in flight.

Determinism. A round's draws come from random.Random seeded by (learner seed, learner round
number) and the round's `now`; the fleet-wide round id is only known inside the commit, so it
cannot seed the draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from redis.asyncio import Redis

from services.training import learner_model as lm
from services.training import selection
from services.training.curriculum import (
    Curriculum,
    builtin_topics,
    make_topic,
    topic_from_dict,
)
from services.training.grader import feedback, js_round
from services.training.pipelining import AutoPipeline
from services.training.state_cache import StateCache
from shared.errors import ApiError, Conflict, NotFound
from shared.keys import Keys
from shared.learner_state import (
    LearnerState,
    SelectionRuntime,
    decode,
    encode,
    incarnation_marker,
)
from shared.retry import conflict_backoff
from shared.scripts import Scripts

MAX_ATTEMPTS = 8
# A single round retries longer: its first attempt may come from the cache, which under contention
# from another replica races that replica's equally fast cached commits (see state_cache.py); a
# busy machine that deschedules one replica for a few ms can make it lose several races in a row.
ROUND_MAX_ATTEMPTS = 16
# Single rounds check the curriculum version at most this often (the batch path and every GET
# check it on each call): a topic added on another replica reaches this one's single rounds within
# this delay, and the hot path saves a pipeline per round. Topics added here refresh at once.
CURRICULUM_CHECK_S = 0.1
TOTAL_ROUNDS = 100  # the original's cosmetic "totalRounds"


def round_rng(seed: int, learner_round: int) -> random.Random:
    return random.Random((seed << 32) ^ learner_round)


@dataclass(slots=True)
class RoundOutcome:
    learner_round: int  # the learner's own round number after this round
    trained: list[str]
    scores: dict[str, int]
    avg: float
    below: int
    next_review_ms: int
    results: list[dict[str, Any]] = field(default_factory=list)  # only when detail=True


def compute_round(
    state: LearnerState, cur: Curriculum, now: float, *, detail: bool = False
) -> RoundOutcome:
    """Run one round on `state` in place (selection, problems, practice, reviews)."""
    rng = round_rng(state.seed, state.rounds)
    by_key = cur.by_key
    trained = selection.select(state, cur, now)
    scores: dict[str, int] = {}
    results: list[dict[str, Any]] = []

    def attempt(key: str, review: bool, background: bool) -> None:
        topic = by_key[key]
        d = state.domain(key)
        problem, score, matched = lm.solve(rng, topic, d, now)
        lm.practise(state, key, score, now, lm.related(key, by_key), review_interval=review)
        scores[key] = score
        if detail:
            entry: dict[str, Any] = {
                "topic": key,
                "topicName": topic.name,
                "problemsSolved": 1,
                "avgScore": score,
                "results": [
                    {
                        "problemId": problem.id,
                        "problem": problem.problem,
                        "score": score,
                        "feedback": feedback(matched, len(problem.keywords)),
                        "difficulty": problem.difficulty,
                    }
                ],
            }
            if background:
                entry["background"] = True
            if review:
                entry["review"] = True
            results.append(entry)

    for key in trained:
        attempt(key, False, False)
    bg = selection.background_pick(state, cur)
    if bg is not None and bg not in trained:
        attempt(bg, False, True)
        trained.append(bg)
    for key in selection.due_reviews(state, cur, trained, now):
        attempt(key, True, False)
    state.rounds += 1
    threshold = float(selection.effective_settings(state.settings)["selection"]["targetThreshold"])
    avg, below, next_review_ms = lm.readiness_inputs(state, cur.topics, threshold, now)
    return RoundOutcome(state.rounds, trained, scores, avg, below, next_review_ms, results)


def ms(epoch_s: float) -> int | None:
    return int(epoch_s * 1000) if epoch_s > 0 else None


def domain_summary(state: LearnerState, cur: Curriculum, now: float) -> dict[str, Any]:
    """The original's `summary` map: every attempted topic."""
    out: dict[str, Any] = {}
    for topic in cur.topics:
        d = state.domains.get(topic.key)
        if d is None or d.attempts == 0:
            continue
        conf = js_round(d.confidence)
        out[topic.key] = {
            "name": topic.name,
            "mastery": js_round(lm.displayed_mastery(d, now)),
            "confidence": conf,
            "uncertaintyBand": 100 - conf,
            "attempts": d.attempts,
            "trend": lm.trend(d),
            "lastPracticed": ms(d.last),
            "nextReview": ms(d.next_review),
        }
    return out


def status_label(mastery: float) -> str:
    if mastery >= 90:
        return "mastered"
    if mastery >= 70:
        return "proficient"
    if mastery >= 50:
        return "learning"
    return "weak"


def new_learner_state(learner: str, region: str, active: bool, now: float) -> LearnerState:
    return LearnerState(
        id=learner,
        seed=secrets.randbits(31),
        region=region,
        created=now,
        active=active,
        started_at=now if active else 0.0,
    )


class KeyedLocks:
    """One asyncio.Lock per key, removed once no task holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (asyncio.Lock(), [0])
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if entry[1][0] == 0:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


class TrainingStore:
    """Learners, rounds and the curriculum on Redis."""

    def __init__(
        self,
        redis: Redis,
        scripts: Scripts,
        keys: Keys,
        *,
        history_limit: int = 100,
        stream_maxlen: int = 1_000_000,
        state_cache: int = 50_000,
        pipeline_connections: int = 2,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.history_limit = history_limit
        self.stream_maxlen = stream_maxlen
        self.locks = KeyedLocks()
        self.cache = StateCache(state_cache)
        self.pipe = AutoPipeline(redis, connections=pipeline_connections)
        self.cur = Curriculum.of(builtin_topics(), version=-1)
        self._cur_checked = 0.0  # monotonic time the cached curriculum was last checked

    async def aclose(self) -> None:
        await self.pipe.aclose()

    # ---- curriculum ------------------------------------------------------------------------
    async def init_curriculum(self) -> None:
        """Write the built-in topics if missing. MULTI/EXEC: the HSETNXs and the version bump
        land together, so another replica never sees new topics under an old version."""
        async with self.redis.pipeline(transaction=True) as pipe:
            for topic in builtin_topics():
                pipe.hsetnx(self.keys.curriculum, topic.key, orjson.dumps(topic.to_dict()).decode())
            pipe.incr(self.keys.curriculum_version)
            await pipe.execute()
        await self.refresh_curriculum()

    async def refresh_curriculum(self) -> Curriculum:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self.keys.curriculum_version)
            pipe.hgetall(self.keys.curriculum)
            version, raw = await pipe.execute()
        if not raw:
            # Redis lost the curriculum (flushed, or a fresh instance behind the same URL): the
            # built-ins are re-seeded rather than training against no topics at all.
            await self.init_curriculum()
            return self.cur
        topics = [topic_from_dict(k, orjson.loads(v)) for k, v in raw.items()]
        self.cur = Curriculum.of(topics, int(version or 0))
        self._cur_checked = time.monotonic()
        return self.cur

    async def refresh_if_stale(self) -> Curriculum:
        return await self._curriculum_at(await self.redis.get(self.keys.curriculum_version))

    async def _curriculum_at(self, version: str | None) -> Curriculum:
        self._cur_checked = time.monotonic()
        if int(version or 0) != self.cur.version:
            await self.refresh_curriculum()
        return self.cur

    async def add_topic(
        self, key: str, name: str, problems: list[dict[str, Any]], background: bool, force: bool
    ) -> dict[str, Any]:
        cur = await self.refresh_curriculum()
        existing = cur.get(key)
        if existing is not None and not force:
            raise Conflict(
                f"Topic {key!r} already exists; pass force: true to replace it",
                code="topic_exists",
            )
        order = existing.order if existing is not None else max(t.order for t in cur.topics) + 1
        topic = make_topic(key, name, problems, background, order)
        doc = orjson.dumps(topic.to_dict()).decode()
        # MULTI/EXEC: topic write and version bump are one step, so every replica's cache check
        # (which reads the version) sees the topic as soon as it exists.
        async with self.redis.pipeline(transaction=True) as pipe:
            if force:
                pipe.hset(self.keys.curriculum, key, doc)
            else:
                pipe.hsetnx(self.keys.curriculum, key, doc)
            pipe.incr(self.keys.curriculum_version)
            written, _ = await pipe.execute()
        if not force and not written:
            raise Conflict(f"Topic {key!r} already exists", code="topic_exists")
        await self.refresh_curriculum()
        out: dict[str, Any] = {"ok": True, "key": key, "background": background}
        if existing is not None:
            out["updated"] = True
        return out

    # ---- learners --------------------------------------------------------------------------
    async def create_learner(
        self, learner: str, region: str, active: bool, now: float | None = None
    ) -> LearnerState | None:
        """Create; None when the id is taken."""
        state = new_learner_state(learner, region, active, now or time.time())
        seq = await self.scripts.create_learner(
            keys=self.keys.create_learner_keys(learner),
            args=[learner, encode(state), region, 1 if active else 0],
        )
        return state if int(seq) > 0 else None

    async def create_learners(self, specs: list[tuple[str, str]], now: float) -> int:
        """Create many active learners in one pipelined round trip; returns how many were new."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for learner, region in specs:
                state = new_learner_state(learner, region, True, now)
                await self.scripts.create_learner(
                    keys=self.keys.create_learner_keys(learner),
                    args=[learner, encode(state), region, 1],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(1 for r in results if int(r) > 0)

    async def load(self, learner: str) -> tuple[str, LearnerState, bool]:
        """(version, state, ready flag); 404 when the learner does not exist."""
        v, s, r = await self.redis.hmget(self.keys.learner_state(learner), ["v", "s", "r"])
        if v is None or s is None:
            raise NotFound(f"Learner {learner!r} not found", code="learner_not_found")
        return v, decode(s), r == "1"

    async def delete_learner(self, learner: str) -> bool:
        k = self.keys
        keys = k.delete_learner_keys(learner)
        self.cache.drop(learner)
        return int(await self.scripts.delete_learner(keys=keys, args=[learner])) == 1

    async def list_learners(
        self, cursor: int, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        rows = await self.redis.zrangebyscore(
            self.keys.learners_index, f"({cursor}", "+inf", start=0, num=limit, withscores=True
        )
        if not rows:
            return [], None
        async with self.redis.pipeline(transaction=False) as pipe:
            for learner, _ in rows:
                pipe.hmget(self.keys.learner_state(learner), ["s", "r"])
            raw = await pipe.execute()
        cur = self.cur
        now = time.time()
        items = []
        for (learner, seq), (s, r) in zip(rows, raw, strict=True):
            if s is None:
                continue  # deleted between the two reads
            state = decode(s)
            avg, below, _ = self.readiness(state, cur, now)
            items.append(
                {
                    "id": learner,
                    "seq": int(seq),
                    "region": state.region,
                    "active": state.active,
                    "rounds": state.rounds,
                    "average": avg,
                    "below": below,
                    "ready": r == "1",
                }
            )
        next_cursor = int(rows[-1][1]) if len(rows) == limit else None
        return items, next_cursor

    def readiness(self, state: LearnerState, cur: Curriculum, now: float) -> tuple[float, int, int]:
        threshold = float(
            selection.effective_settings(state.settings)["selection"]["targetThreshold"]
        )
        return lm.readiness_inputs(state, cur.topics, threshold, now)

    async def history(self, learner: str, limit: int) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.learner_state(learner))
            pipe.lrange(self.keys.learner_history(learner), 0, limit - 1)
            exists, raw = await pipe.execute()
        if not exists:
            raise NotFound(f"Learner {learner!r} not found", code="learner_not_found")
        return [orjson.loads(x) for x in raw]

    # ---- writes other than rounds ------------------------------------------------------------
    async def _cas(self, learner: str, change: Any, op: str) -> LearnerState:
        """Apply `change(state) -> bool` (False = nothing to write) with the cas_state script,
        recomputing from the state it returns on a version conflict (bounded)."""
        v, state, _ = await self.load(learner)
        for attempt in range(MAX_ATTEMPTS):
            await conflict_backoff(attempt)
            if not change(state):
                return state
            encoded = encode(state)
            self.cache.drop(learner)  # until the outcome is known
            res = await self.scripts.cas_state(
                keys=self.keys.cas_state_keys(learner), args=[v, encoded, learner, op]
            )
            if int(res[0]) == 1:
                self.cache.put(learner, res[1], encoded)
                return state
            if int(res[0]) == -1:
                raise NotFound(f"Learner {learner!r} not found", code="learner_not_found")
            v, state = res[1], decode(res[2])
        raise Conflict("Learner state kept changing; try again", code="version_conflict")

    async def start(self, learner: str, reset: bool) -> LearnerState:
        now = time.time()
        created = await self.create_learner(learner, "local", True, now)
        if created is not None:
            return created

        def change(state: LearnerState) -> bool:
            if state.active and not reset:
                return False  # already training: start is idempotent and never resets
            state.active = True
            state.started_at = now
            if reset:
                state.domains = {}
                state.selection = SelectionRuntime()
            return True

        return await self._cas(learner, change, "queue")

    async def update_settings(self, learner: str, patch: dict[str, Any]) -> LearnerState:
        def change(state: LearnerState) -> bool:
            state.settings = selection.merge_settings(state.settings, patch)
            if patch.get("selection", {}).get("autoFillGaps") is False:
                state.selection.locked_batch = []
                state.selection.join_attempts = {}
            return True

        return await self._cas(learner, change, "keep")

    # ---- rounds --------------------------------------------------------------------------------
    def _commit_args(
        self, v: str, state: LearnerState, now: float, outs: list[RoundOutcome], dur_ms: float
    ) -> list[Any]:
        last = outs[-1]
        args: list[Any] = [
            v,
            encode(state),
            state.id,
            state.region,
            int(now * 1000),
            last.avg,
            last.below,
            last.next_review_ms,
            self.history_limit,
            self.stream_maxlen,
            len(outs),
        ]
        ts = int(now * 1000)
        per = round(dur_ms / len(outs), 3)
        for out in outs:
            args.append(
                orjson.dumps(
                    {
                        "n": out.learner_round,
                        "ts": ts,
                        "trained": out.trained,
                        "scores": out.scores,
                        "avg": out.avg,
                        "ms": per,
                    }
                ).decode()
            )
            args.append(per)
        return args

    async def run_round(self, learner: str) -> dict[str, Any]:
        """One round for one learner, with the original's detailed result."""
        started = time.perf_counter()
        async with self.locks.hold(learner):
            try:
                return await self._run_round_locked(learner, started)
            except BaseException:
                # Whatever happened to the commit (error, cancellation, conflicts), the entry may
                # no longer be current: the next round reads the learner from Redis.
                self.cache.drop(learner)
                raise

    async def _run_round_locked(self, learner: str, started: float) -> dict[str, Any]:
        pipe = self.pipe
        state_key = self.keys.learner_state(learner)
        futures: list[asyncio.Future[Any]] = []
        if time.monotonic() - self._cur_checked >= CURRICULUM_CHECK_S:
            # Marked at once, so the requests of this interval do not all check.
            self._cur_checked = time.monotonic()
            futures.append(pipe.execute("GET", self.keys.curriculum_version))
        cached = self.cache.get(learner)
        if cached is None:
            futures.append(pipe.execute("HMGET", state_key, "v", "s"))
        # Both queued in this loop turn, so they share one batch; gather retrieves every error.
        replies = await asyncio.gather(*futures) if futures else []
        if cached is None:
            v, s = replies.pop()
        else:
            v, s = cached
        cur = await self._curriculum_at(replies[0]) if replies else self.cur
        from_cache = cached is not None
        for attempt in range(ROUND_MAX_ATTEMPTS):
            if attempt and not from_cache:
                await conflict_backoff(attempt)
            if v is None or s is None:
                raise NotFound(f"Learner {learner!r} not found", code="learner_not_found")
            state = decode(s)
            if not state.active:
                if from_cache:  # perhaps started on another replica since: ask Redis
                    from_cache = False
                    v, s = await pipe.execute("HMGET", state_key, "v", "s")
                    continue
                raise _not_started(learner)
            now = time.time()
            out = compute_round(state, cur, now, detail=True)
            dur = (time.perf_counter() - started) * 1000
            args = self._commit_args(v, state, now, [out], dur)
            if from_cache:
                args.append(incarnation_marker(state))
            res = await pipe.evalsha(
                self.scripts.commit_rounds, self.keys.commit_rounds_keys(learner), args
            )
            code = int(res[0])
            if code == 1:
                self.cache.put(learner, res[1], args[1])
                return {
                    "success": True,
                    "round": int(res[2]),
                    "totalRounds": TOTAL_ROUNDS,
                    "trained": out.trained,
                    "results": out.results,
                    "summary": domain_summary(state, cur, now),
                    "learner": learner,
                    "learnerRound": out.learner_round,
                    "average": out.avg,
                    "ready": int(res[3]) == 1,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                }
            if code == -1:
                raise NotFound(f"Learner {learner!r} not found", code="learner_not_found")
            # Conflict: recompute from the state the script returned (current, not cached).
            v, s, from_cache = res[1], res[2], False
            self.cache.contend(learner)
        raise Conflict(
            "Concurrent rounds for this learner kept conflicting; try again",
            code="version_conflict",
        )

    async def run_batch(self, learners: list[str], n: int) -> dict[str, Any]:
        """`n` rounds for each learner: one pipelined read, compute, one pipelined commit (one
        EVALSHA per learner carrying all its rounds); only conflicted learners are retried."""
        started = time.perf_counter()
        errors: list[dict[str, Any]] = []
        rounds: list[dict[str, Any]] = []
        # Through the auto-pipeline too: one batch, packed by hiredis (see pipelining.py).
        pipe = self.pipe
        futures = [pipe.execute("HMGET", self.keys.learner_state(x), "v", "s") for x in learners]
        futures.append(pipe.execute("GET", self.keys.curriculum_version))
        raw = await asyncio.gather(*futures)
        cur = await self._curriculum_at(raw[-1])
        pending: list[tuple[str, str, str]] = []
        for learner, (v, s) in zip(learners, raw[:-1], strict=True):
            if v is None or s is None:
                errors.append(_err(learner, "learner_not_found", "Learner not found"))
            else:
                pending.append((learner, v, s))
        for attempt in range(MAX_ATTEMPTS):
            if not pending:
                break
            await conflict_backoff(attempt)
            now = time.time()
            computed: list[tuple[str, list[RoundOutcome]]] = []
            encoded: dict[str, str] = {}
            calls: list[tuple[list[str], list[Any]]] = []
            for learner, v, s in pending:
                state = decode(s)
                if not state.active:
                    errors.append(_not_started_err(learner))
                    continue
                t0 = time.perf_counter()
                outs = [compute_round(state, cur, now) for _ in range(n)]
                dur = (time.perf_counter() - t0) * 1000
                args = self._commit_args(v, state, now, outs, dur)
                encoded[learner] = args[1]
                calls.append((self.keys.commit_rounds_keys(learner), args))
                computed.append((learner, outs))
            results = await pipe.evalsha_many(self.scripts.commit_rounds, calls) if calls else []
            pending = []
            for (learner, outs), res in zip(computed, results, strict=True):
                code = int(res[0])
                if code == 1:
                    self.cache.refresh(learner, res[1], encoded[learner])
                    first, ready, became = int(res[2]), int(res[3]) == 1, int(res[4]) == 1
                    last = len(outs) - 1
                    for i, out in enumerate(outs):
                        rounds.append(
                            {
                                "round": first + i,
                                "learner": learner,
                                "trained": out.trained,
                                "avg": out.avg,
                                # Readiness is decided by the commit for the learner's final state.
                                "ready": ready if i == last else False,
                                "became_ready": became if i == last else False,
                            }
                        )
                elif code == 0:
                    pending.append((learner, res[1], res[2]))
                else:
                    errors.append(_err(learner, "learner_not_found", "Learner not found"))
        for learner, _, _ in pending:
            errors.append(
                _err(learner, "version_conflict", "Concurrent writes kept conflicting; try again")
            )
        return {
            "committed": len(rounds),
            "rounds": rounds,
            "errors": errors,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        }


def _not_started(learner: str) -> ApiError:
    return Conflict(
        f"Training is not started for learner {learner!r}; POST /api/v1/training/start first",
        code="training_not_started",
    )


def _err(learner: str, code: str, message: str) -> dict[str, Any]:
    return {"learner": learner, "code": code, "message": message}


def _not_started_err(learner: str) -> dict[str, Any]:
    return _err(learner, "training_not_started", "Training is not started for this learner")
