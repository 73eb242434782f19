"""Training's Redis access: learners (create, read, list, delete, history), version-checked
changes of a learner's state, and rounds (single and batched), committed through the shared
atomic scripts. It answers outcomes, not JSON: presenters.py shapes the answers.

Concurrency. Rounds for one learner inside one process are serialised by a per-learner
asyncio.Lock held only around read → compute → commit (locks are dropped when nobody holds or
waits for them, so the dict is bounded by the requests in flight). Across replicas (and for the
batch path, which does not take the locks) the version check inside `commit_rounds` refuses a
stale write and returns the current version and state, from which we recompute without another
read; after MAX_ATTEMPTS conflicts the caller gets a VersionConflict. So no update is ever lost.

Hot path. A single round reads the learner from an in-process cache (state_cache.py: why a stale
entry is safe) and its commit goes through an auto-pipeline (pipelining.py) shared by every request
of the event-loop turn: one round = one EVALSHA, sent in a batch with the others in flight. The
single round is built from public steps (`hold`, `read`, `compute`, `commit`) so a benchmark can
price each one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from services.training import paging, selection
from services.training.coalesce import RoundCoalescer
from services.training.curriculum import Curriculum
from services.training.curriculum_store import DEFAULT_MAX_TOPICS, CurriculumStore
from services.training.pipelining import AutoPipeline
from services.training.round import RoundOutcome, compute_round, new_learner_state
from services.training.state_cache import StateCache
from services.training.thresholds import ThresholdsCache
from shared import history, idempotency
from shared.commit_rounds import (
    IDEMPOTENCY_TTL_MS,
    CommitHeader,
    CommitReply,
    commit_rounds_args,
    read_reply,
    rejected_of,
)
from shared.domain_errors import (
    ConflictError,
    IdempotencyKeyReused,
    LearnerExists,
    LearnerNotFound,
    VersionConflict,
)
from shared.fleet_totals import learner_count
from shared.history import Anchor
from shared.keyed_locks import KeyedLocks
from shared.keys import Keys, round_id_base
from shared.learner_state import (
    LearnerState,
    SelectionRuntime,
    decode,
    encode,
    incarnation_marker,
)
from shared.readiness import (
    ReadinessThresholds,
    read_thresholds,
)
from shared.redis_types import FleetRedis, scored, text
from shared.retry import conflict_backoff
from shared.scripts import ScriptCall, Scripts, evalsha_pipelined

MAX_ATTEMPTS = 8
# A single round retries longer: its first attempt may come from the cache, which under contention
# from another replica races that replica's equally fast cached commits (see state_cache.py); a
# busy machine that deschedules one replica for a few ms can make it lose several races in a row.
ROUND_MAX_ATTEMPTS = 16
# The batch outcome of a learner whose shard's fencing token (sent by a coach replica) is no
# longer the shard's: that replica lost the shard's lease, so nothing was committed for it.
FENCED = "fenced"


class TrainingNotStarted(ConflictError):
    code = "training_not_started"

    def __init__(self, learner: str) -> None:
        super().__init__(
            f"Training is not started for learner {learner!r}; POST /api/v1/training/start first"
        )


class LearnerInactive(ConflictError):
    """Rounds for a learner a throttle deactivated (POST /api/v1/system/scale with hold):
    refused, nothing committed, until the target rises again and reactivates it."""

    code = "learner_inactive"

    def __init__(self, learner: str) -> None:
        super().__init__(
            f"Learner {learner!r} is inactive: the population target holds it back "
            "(GET /api/v1/system/scale); it is reactivated when the target rises again"
        )


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A client's Idempotency-Key and the hash of the request it came with
    (shared.commit_rounds.request_hash)."""

    key: str
    request_hash: str


@dataclass(slots=True)
class LearnerRead:
    """A learner as a round computes from it: (version, encoded state), both None when the
    learner does not exist, and whether it came from the in-process cache."""

    version: str | None
    encoded: str | bytes | None
    from_cache: bool


@dataclass(slots=True)
class PreparedRound:
    """A computed round, not yet committed: the learner's state after it, and the commit's
    arguments."""

    learner: str
    state: LearnerState
    curriculum: Curriculum
    now: float
    outcome: RoundOutcome
    args: list[Any]  # commit_rounds' ARGV
    idempotency_key: str | None = None


@dataclass(slots=True)
class CommittedRound:
    prepared: PreparedRound
    round_id: int  # unique fleet-wide: the shard's base + the shard's counter
    ready: bool
    started: float  # perf_counter() when the round was asked for


@dataclass(slots=True)
class ReplayedRounds:
    """A commit made earlier under the same Idempotency-Key, as its record keeps it: nothing was
    committed now. (The rounds' results are not kept, only ids, version and readiness.)"""

    learner: str
    first_round_id: int
    count: int
    version: str  # the learner's version right after that commit
    ready: bool
    became_ready: bool
    started: float  # perf_counter() when the request was asked for


@dataclass(slots=True)
class CommittedRounds:
    """One learner's rounds of a batch, committed together (or, with `replay`, committed by an
    earlier request under the same Idempotency-Key; `outcomes` is then empty)."""

    learner: str
    outcomes: list[RoundOutcome]
    first_round_id: int
    ready: bool  # decided by the commit for the learner's final state
    became_ready: bool
    replay: ReplayedRounds | None = None


@dataclass(slots=True)
class BatchOutcome:
    committed: list[CommittedRounds]
    failed: list[tuple[str, str]]  # (learner, error code), in the order they were found
    started: float  # perf_counter() when the batch was asked for


@dataclass(slots=True)
class ListedLearner:
    id: str
    seq: int  # its position in the listing order (services/training/paging.py)
    state: LearnerState
    ready: bool
    inactive: bool = False  # deactivated by a throttle (activation.py)


class TrainingStore:
    """Learners, rounds and the curriculum on Redis."""

    def __init__(
        self,
        redis: FleetRedis,
        scripts: Scripts,
        keys: Keys,
        *,
        history_limit: int = 100,
        state_cache: int = 50_000,
        pipeline_connections: int = 2,
        max_topics: int = DEFAULT_MAX_TOPICS,
        coalesce_max: int = 32,
    ) -> None:
        self.redis = redis
        self.scripts = scripts
        self.keys = keys
        self.history_limit = history_limit
        self.locks = KeyedLocks()
        self.cache = StateCache(state_cache)
        # Concurrent single rounds of one learner share one commit (coalesce.py).
        self.coalescer: RoundCoalescer[CommittedRound] = RoundCoalescer(
            self._run_group, max_group=coalesce_max
        )
        self.pipe = AutoPipeline(redis, connections=pipeline_connections)
        self.curriculum = CurriculumStore(redis, keys, max_topics)
        self.thresholds = ThresholdsCache(redis, keys)

    async def aclose(self) -> None:
        await self.coalescer.aclose()
        await self.thresholds.aclose()
        await self.pipe.aclose()

    # ---- learners --------------------------------------------------------------------------
    async def create_learner(
        self, learner: str, region: str, active: bool, now: float | None = None
    ) -> LearnerState:
        """Create a learner; LearnerExists when the id is taken."""
        state = await self._create(learner, region, active, now or time.time())
        if state is None:
            raise LearnerExists(learner)
        return state

    async def _create(
        self, learner: str, region: str, active: bool, now: float
    ) -> LearnerState | None:
        state = new_learner_state(learner, region, active, now)
        seq = await self.scripts.create_learner(
            keys=self.keys.create_learner_keys(learner),
            args=[learner, encode(state), region, 1 if active else 0],
        )
        return state if int(seq) > 0 else None

    async def create_learners(self, specs: list[tuple[str, str]], now: float) -> int:
        """Create many active learners in one pipelined round trip; returns how many were new."""
        calls: list[ScriptCall] = [
            (
                self.keys.create_learner_keys(learner),
                [learner, encode(new_learner_state(learner, region, True, now)), region, 1],
            )
            for learner, region in specs
        ]
        results = await evalsha_pipelined(self.redis, self.scripts.create_learner, calls)
        return sum(1 for r in results if int(r) > 0)

    async def load(self, learner: str) -> tuple[str, LearnerState, bool]:
        """(version, state, ready flag) of an existing learner."""
        v, s, r = await self.redis.hmget(self.keys.learner_state(learner), ["v", "s", "r"])
        if v is None or s is None:
            raise LearnerNotFound(learner)
        return text(v), decode(s), r == "1"

    async def delete_learner(self, learner: str) -> None:
        self.cache.drop(learner)
        deleted = await self.scripts.delete_learner(
            keys=self.keys.delete_learner_keys(learner), args=[learner]
        )
        if int(deleted) != 1:
            raise LearnerNotFound(learner)

    async def _index_reads(
        self, reads: Sequence[tuple[int, int, int]]
    ) -> list[list[tuple[str, int]]]:
        """Per (shard, first creation number, count): that shard's learners from there on."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for shard, first, count in reads:
                pipe.zrangebyscore(
                    self.keys.learners_index(shard),
                    first,
                    "+inf",
                    start=0,
                    num=count,
                    withscores=True,
                )
            replies = await pipe.execute()
        return [[(learner, int(seq)) for learner, seq in scored(r)] for r in replies]

    async def list_learners(
        self, cursor: int, limit: int
    ) -> tuple[list[ListedLearner], int | None]:
        """Up to `limit` learners after position `cursor` in the fleet's listing order (the
        shards' indexes merged: services/training/paging.py), and the cursor of the next page
        (None on the last)."""
        rows, next_cursor = await paging.merged_page(
            self._index_reads, self.keys.shards, cursor, limit
        )
        if not rows:
            return [], None
        async with self.redis.pipeline(transaction=False) as pipe:
            for learner, _ in rows:
                pipe.hmget(self.keys.learner_state(learner), ["s", "r", "inactive"])
            raw = await pipe.execute()
        listed = [
            ListedLearner(learner, int(seq), decode(s), r == "1", off is not None)
            for (learner, seq), (s, r, off) in zip(rows, raw, strict=True)
            if s is not None  # None: deleted between the two reads
        ]
        return listed, next_cursor

    async def count_learners(self) -> int:
        """The sum of the shards' index sizes (shared/fleet_totals.py)."""
        return await learner_count(self.redis, self.keys)

    async def history(self, learner: str, limit: int) -> list[Any]:
        """The newest `limit` rounds: the history string's, then those of a list written
        before it (older; see `history.read_entries`)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.exists(self.keys.learner_state(learner))
            pipe.get(self.keys.learner_history(learner))
            pipe.lrange(self.keys.learner_history_list(learner), 0, limit - 1)
            exists, blob, legacy = await pipe.execute()
        if not exists:
            raise LearnerNotFound(learner)
        # A list of the older encoding was capped at the history length: so is the answer.
        return history.read_entries(blob, legacy, min(limit, self.history_limit))

    async def readiness_thresholds(self) -> ReadinessThresholds:
        return await read_thresholds(self.redis, self.keys)

    async def claim_idempotency(self, idem: Idempotency) -> None:
        """Tie the key to this request's hash for 24 h, before anything is committed; raise
        IdempotencyKeyReused when it is tied to another request. The per-learner record in the
        commit script is what makes a retry commit nothing; this fleet-wide one catches the key
        sent again for another learner, whose slot holds no record."""
        await idempotency.claim(
            self.redis, self.keys.training_idempotency(idem.key), idem.request_hash
        )

    # ---- writes other than rounds ------------------------------------------------------------
    async def _cas(
        self, learner: str, change: Callable[[LearnerState], bool], op: str
    ) -> LearnerState:
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
                raise LearnerNotFound(learner)
            v, state = res[1], decode(res[2])
        raise VersionConflict("Learner state kept changing; try again")

    async def start(self, learner: str, reset: bool) -> LearnerState:
        now = time.time()
        created = await self._create(learner, "local", True, now)
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

    async def rewrite(self, learner: str, change: Callable[[LearnerState], bool]) -> LearnerState:
        """A change of the learner's domains outside a round (calibration), as one compare-and-
        set; readiness and the coach's queue follow at the learner's next round."""
        return await self._cas(learner, change, "keep")

    # ---- one round: hold → read → compute → commit ---------------------------------------------
    def hold(self, learner: str) -> AbstractAsyncContextManager[None]:
        """This process's lock on the learner's rounds."""
        return self.locks.hold(learner)

    async def read(self, learner: str, *, cached: bool = True) -> tuple[LearnerRead, Curriculum]:
        """The learner (from the cache when `cached` and present, else one auto-pipelined read)
        and the curriculum, whose version is checked at most every CURRICULUM_CHECK_S."""
        futures: list[asyncio.Future[Any]] = []
        if self.curriculum.check_due():
            futures.append(self.pipe.execute("GET", self.keys.curriculum_version))
        entry = self.cache.get(learner) if cached else None
        if entry is None:
            futures.append(self.pipe.execute("HMGET", self.keys.learner_state(learner), "v", "s"))
        # Both queued in this loop turn, so they share one batch; gather retrieves every error.
        replies = await asyncio.gather(*futures) if futures else []
        if entry is None:
            v, s = replies.pop()
            read = LearnerRead(v, s, False)
        else:
            read = LearnerRead(entry[0], entry[1], True)
        if replies:
            curriculum = await self.curriculum.at_version(replies[0])
        else:
            curriculum = self.curriculum.current
        return read, curriculum

    def compute(
        self,
        learner: str,
        read: LearnerRead,
        state: LearnerState,
        curriculum: Curriculum,
        started: float,
        idem: Idempotency | None = None,
    ) -> PreparedRound:
        """Run the round on `state` (decoded from `read`) and build its commit; a state read from
        the cache is committed with its incarnation guard."""
        now = time.time()
        out = compute_round(state, curriculum, now, detail=True)
        dur = (time.perf_counter() - started) * 1000
        guard = incarnation_marker(state) if read.from_cache else None
        args = self.commit_args(read.version or "", state, now, [out], dur, guard, idem)
        key = idem.key if idem is not None else None
        return PreparedRound(learner, state, curriculum, now, out, args, key)

    async def commit(
        self, prepared: PreparedRound, started: float
    ) -> CommittedRound | ReplayedRounds | LearnerRead:
        """Commit one round; on a version conflict, the learner as it is now, to recompute from;
        the earlier commit when the Idempotency-Key's record has one."""
        learner = prepared.learner
        keys = self.keys.commit_rounds_keys(learner, prepared.idempotency_key)
        reply = await self._commit_reply(
            self.pipe.evalsha(self.scripts.commit_rounds, keys, prepared.args)
        )
        if reply.status == "committed":
            self.cache.put(learner, reply.version, prepared.args[1])
            return CommittedRound(prepared, reply.first_round, reply.ready, started)
        if reply.status == "replayed":
            await self.replay_replicated([keys])
            return _replayed(learner, reply, started)
        if reply.status == "missing":
            raise LearnerNotFound(learner)
        if reply.status == "inactive":
            raise LearnerInactive(learner)
        if reply.status == "mismatch":
            raise IdempotencyKeyReused()
        self.cache.contend(learner)
        return LearnerRead(reply.version, reply.state, False)

    @staticmethod
    async def _commit_reply(call: Awaitable[Any]) -> CommitReply:
        return (await TrainingStore._commit_replies(_one(call)))[0]

    @staticmethod
    async def _commit_replies(call: Awaitable[list[Any]]) -> list[CommitReply]:
        """The commits' replies, read; an argument the script refused (before writing anything)
        becomes CommitRejected, not an anonymous Redis error."""
        try:
            return [read_reply(res) for res in await call]
        except ResponseError as exc:
            rejected = rejected_of(exc)
            if rejected is None:
                raise
            raise rejected from exc

    async def run_round(
        self, learner: str, idem: Idempotency | None = None
    ) -> CommittedRound | ReplayedRounds:
        """One round for one learner, with the per-topic detail of its results; with `idem`, the
        round committed earlier under that key if there is one (nothing is committed then).

        Without `idem`, concurrent rounds of the learner are coalesced into one commit (see
        coalesce.py). A round with an Idempotency-Key commits alone: its key's record names
        exactly one commit, whose replay answers that round only."""
        started = time.perf_counter()
        if idem is None:
            return await self.coalescer.submit(learner, started)
        done = await self._rounds(learner, [started], idem)
        return done if isinstance(done, ReplayedRounds) else done[0]

    async def _run_group(self, learner: str, starteds: list[float]) -> list[CommittedRound]:
        """The coalescer's runner: rounds for the requests of one group (their start times, in
        arrival order), computed one after another on the learner's newest state and committed
        in one step."""
        done = await self._rounds(learner, starteds, None)
        if isinstance(done, ReplayedRounds):  # only a key's record replays; a group has none
            raise RuntimeError("rounds without an Idempotency-Key were replayed")
        return done

    async def _rounds(
        self, learner: str, starteds: list[float], idem: Idempotency | None
    ) -> list[CommittedRound] | ReplayedRounds:
        async with self.hold(learner):
            try:
                return await self._rounds_held(learner, starteds, idem)
            except BaseException:
                # Whatever happened to the commit (error, cancellation, conflicts), the entry may
                # no longer be current: the next round reads the learner from Redis.
                self.cache.drop(learner)
                raise

    async def _rounds_held(
        self, learner: str, starteds: list[float], idem: Idempotency | None
    ) -> list[CommittedRound] | ReplayedRounds:
        read, curriculum = await self.read(learner)
        for attempt in range(ROUND_MAX_ATTEMPTS):
            if attempt and not read.from_cache:
                await conflict_backoff(attempt)
            if read.version is None or read.encoded is None:
                raise LearnerNotFound(learner)
            state = decode(read.encoded)
            if not state.active:
                if read.from_cache:  # perhaps started on another replica since: ask Redis
                    read, curriculum = await self.read(learner, cached=False)
                    continue
                raise TrainingNotStarted(learner)
            result: list[CommittedRound] | ReplayedRounds | LearnerRead
            if len(starteds) == 1:  # one round (the common case): its own commit path
                prepared = self.compute(learner, read, state, curriculum, starteds[0], idem)
                one = await self.commit(prepared, starteds[0])
                result = [one] if isinstance(one, CommittedRound) else one
            else:
                result = await self._commit_group(learner, read, state, curriculum, starteds)
            if not isinstance(result, LearnerRead):
                return result
            read = result  # a conflict: recompute from the current state, not the cache's
        raise VersionConflict("Concurrent rounds for this learner kept conflicting; try again")

    async def _commit_group(
        self,
        learner: str,
        read: LearnerRead,
        state: LearnerState,
        curriculum: Curriculum,
        starteds: list[float],
    ) -> list[CommittedRound] | LearnerRead:
        now = time.time()
        t0 = time.perf_counter()
        outs: list[RoundOutcome] = []
        states: list[LearnerState] = []
        for i in range(len(starteds)):
            outs.append(compute_round(state, curriculum, now, detail=True))
            # Each answer shows the learner after its own round: a copy for all but the last
            # (compute_round works in place, so the next round continues from `state`).
            states.append(decode(encode(state)) if i < len(starteds) - 1 else state)
        dur = (time.perf_counter() - t0) * 1000
        guard = incarnation_marker(state) if read.from_cache else None
        args = self.commit_args(read.version or "", state, now, outs, dur, guard)
        keys = self.keys.commit_rounds_keys(learner, None)
        reply = await self._commit_reply(self.pipe.evalsha(self.scripts.commit_rounds, keys, args))
        if reply.status == "committed":
            self.cache.put(learner, reply.version, args[1])
            thresholds = self.thresholds.get()
            last = len(outs) - 1
            return [
                CommittedRound(
                    PreparedRound(learner, states[i], curriculum, now, out, args),
                    reply.first_round + i,
                    # The commit decides the final state's readiness; an earlier round's is
                    # judged with the same thresholds the commit was given.
                    reply.ready if i == last else thresholds.ready(out.avg, out.below),
                    starteds[i],
                )
                for i, out in enumerate(outs)
            ]
        if reply.status == "missing":
            raise LearnerNotFound(learner)
        if reply.status == "inactive":
            raise LearnerInactive(learner)
        if reply.status != "conflict":
            raise RuntimeError(f"unexpected commit status {reply.status!r} for a group")
        self.cache.contend(learner)
        return LearnerRead(reply.version, reply.state, False)

    def commit_args(
        self,
        v: str,
        state: LearnerState,
        now: float,
        outs: list[RoundOutcome],
        dur_ms: float,
        guard: str | None = None,
        idem: Idempotency | None = None,
        fence: int | None = None,
    ) -> list[Any]:
        """commit_rounds' ARGV for `outs`, the rounds just run on `state`; the readiness
        thresholds are the cached coach settings (thresholds.py), the round id base the
        learner's shard's, `fence` the coach's token for that shard (None: unfenced)."""
        last = outs[-1]
        thresholds = self.thresholds.get()
        ts = int(now * 1000)
        per = round(dur_ms / len(outs), 3)
        # The history records are steps from the anchor the state carries (shared/history.py);
        # the state is committed with its advanced anchor in the same script.
        anchor = Anchor(state.hist_ts, state.hist_avg, outs[0].learner_round - 1, state.hist_topics)
        records = history.encode_entries(
            anchor,
            [
                {
                    "n": out.learner_round,
                    "ts": ts,
                    "trained": out.trained,
                    "scores": out.scores,
                    "avg": out.avg,
                    "ms": per,
                }
                for out in outs
            ],
        )
        state.hist_ts, state.hist_avg = anchor.ts, anchor.avg
        header = CommitHeader(
            version=v,
            state=encode(state),
            learner=state.id,
            region=state.region,
            avg=last.avg,
            below=last.below,
            next_review_ms=last.next_review_ms,
            history_limit=self.history_limit,
            min_avg=thresholds.min_avg,
            max_below=thresholds.max_below,
            round_base=round_id_base(self.keys.shard_of(state.id)),
            history_anchor=anchor.encode(),
        )
        entries = [(record, per) for record in records]
        return commit_rounds_args(
            header, entries, guard, idem.request_hash if idem is not None else None, fence=fence
        )

    async def replay_replicated(self, commit_keys: list[list[str]]) -> None:
        """With commits acknowledged only once replicated (the pipeline's `wait_replicas`), a
        replay (the idempotency record says "committed already", nothing written now) must wait
        for the original write too. WAIT counts the replication offset of its connection's own
        last write, and a replay writes nothing: its WAIT could confirm an older offset while
        the replica still lacks the original commit (made earlier, maybe on another connection,
        whose WAIT timed out). So a harmless write in the learner's slot goes first, on the same
        connection as the WAIT: the record's expiry set again (to its full lifetime). The
        master has the original commit before it, so a replica that has this write has both.
        NotReplicated when not confirmed in time."""
        if not self.pipe.wait_replicas or not commit_keys:
            return
        await asyncio.gather(
            *(
                self.pipe.execute("PEXPIRE", keys[-1], IDEMPOTENCY_TTL_MS, wait=True)
                for keys in commit_keys
            )
        )

    # ---- rounds for many learners ----------------------------------------------------------------
    async def run_batch(
        self,
        learners: list[str],
        n: int,
        idem: Idempotency | None = None,
        fences: dict[int, int] | None = None,
    ) -> BatchOutcome:
        """`n` rounds for each learner: one pipelined read, compute, one pipelined commit (one
        EVALSHA per learner carrying all its rounds); only conflicted learners are retried. With
        `idem`, each learner's commit carries the key: a learner committed earlier under it is
        answered from its record (a retry after a partial failure commits only the rest). With
        `fences` (shard -> a coach replica's fencing token), a learner of a listed shard is
        committed only while that token is the shard's, else it fails with FENCED; a learner of
        a shard not listed is committed unfenced."""
        fences = fences or {}
        started = time.perf_counter()
        failed: list[tuple[str, str]] = []
        committed: list[CommittedRounds] = []
        # Through the auto-pipeline too: one batch, packed by hiredis (see pipelining.py).
        pipe = self.pipe
        futures = [pipe.execute("HMGET", self.keys.learner_state(x), "v", "s") for x in learners]
        futures.append(pipe.execute("GET", self.keys.curriculum_version))
        raw = await asyncio.gather(*futures)
        curriculum = await self.curriculum.at_version(raw[-1])
        pending: list[tuple[str, str, str]] = []
        for learner, (v, s) in zip(learners, raw[:-1], strict=True):
            if v is None or s is None:
                failed.append((learner, LearnerNotFound.code))
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
                    failed.append((learner, TrainingNotStarted.code))
                    continue
                t0 = time.perf_counter()
                outs = [compute_round(state, curriculum, now) for _ in range(n)]
                dur = (time.perf_counter() - t0) * 1000
                fence = fences.get(self.keys.shard_of(learner))
                args = self.commit_args(v, state, now, outs, dur, None, idem, fence)
                encoded[learner] = args[1]
                key = idem.key if idem is not None else None
                calls.append((self.keys.commit_rounds_keys(learner, key), args))
                computed.append((learner, outs))
            results = await self._commit_replies(
                pipe.evalsha_many(self.scripts.commit_rounds, calls) if calls else _no_calls()
            )
            await self.replay_replicated(
                [c[0] for c, r in zip(calls, results, strict=True) if r.status == "replayed"]
            )
            pending = []
            for (learner, outs), reply in zip(computed, results, strict=True):
                if reply.status == "committed":
                    self.cache.refresh(learner, reply.version, encoded[learner])
                    committed.append(
                        CommittedRounds(
                            learner, outs, reply.first_round, reply.ready, reply.became_ready
                        )
                    )
                elif reply.status == "replayed":
                    replay = _replayed(learner, reply, started)
                    committed.append(
                        CommittedRounds(
                            learner, [], reply.first_round, reply.ready, reply.became_ready, replay
                        )
                    )
                elif reply.status == "conflict":
                    pending.append((learner, reply.version, text(reply.state)))
                elif reply.status == "mismatch":
                    failed.append((learner, IdempotencyKeyReused.code))
                elif reply.status == "fenced":
                    failed.append((learner, FENCED))
                elif reply.status == "inactive":
                    failed.append((learner, LearnerInactive.code))
                else:
                    failed.append((learner, LearnerNotFound.code))
        failed.extend((learner, VersionConflict.code) for learner, _, _ in pending)
        return BatchOutcome(committed, failed, started)


async def _no_calls() -> list[Any]:
    return []


async def _one(call: Awaitable[Any]) -> list[Any]:
    return [await call]


def _replayed(learner: str, reply: CommitReply, started: float) -> ReplayedRounds:
    return ReplayedRounds(
        learner,
        reply.first_round,
        reply.rounds,
        reply.version,
        reply.ready,
        reply.became_ready,
        started,
    )
