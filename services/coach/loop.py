"""The auto-coach loop: one task per replica, sequential ticks (never overlapping), each sleeping the
rest of the live interval. Every replica ticks, over the shards it owns (shared/shard_leases.py),
while `active` (in Redis) is set; a replica that owns no shard stands by.

A tick: move due reviews back into the owned shards' queues; take the k = microBatchesPerTick ×
batchSize learners (with coverageTarget set, k sized to the owned queues: tick.tick_size) with the
lowest pass over those queues (stride scheduling, see scheduler.py); give each its rounds
(maxRoundsPerCycle, aggressive/hyper multipliers from its last known average); run them through
training's batch endpoint, up to microBatchesPerTick calls at once, each with a timeout and the
fencing tokens of the learners' shards (a learner of a shard another replica took meanwhile is
refused by training, `fenced`); then advance the coached learners' passes and mark them coached
(per shard, fenced), count rounds and record lastAction/lastStatus. A training outage is recorded
(outage.training, lastAction) and the loop keeps ticking; it clears itself on the first tick that
reaches training again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from services.coach.settings_store import CoachSettings
from services.coach.store import CoachStore
from services.coach.tick import Call, TickSummary, plan, summarize, tick_size
from services.coach.training_api import BatchOutcome, TrainingApi
from shared.cancellation import stop_if_cancelled
from shared.clock import now_ms
from shared.logging import get_logger
from shared.shards import ShardOwnership

log = get_logger(__name__)

IDLE_POLL_S = 0.25  # how often an inactive coach, or one that owns no shard, looks again
SLEEP_SLICE_S = 0.25  # the interval is re-read at least this often while sleeping
MAX_TRACKED_AVERAGES = 200_000


class MetaBacklog(Protocol):
    """The meta trigger, as the loop sees it: how many meta calls are still in flight."""

    async def wait_backlog_below(self, limit: int, timeout_s: float) -> bool: ...


class AverageCache:
    """Each learner's last average mastery, as training reported it; bounded (oldest dropped)."""

    def __init__(self, limit: int = MAX_TRACKED_AVERAGES) -> None:
        self.limit = limit
        self._data: dict[str, float] = {}

    def get(self, learner: str) -> float | None:
        return self._data.get(learner)

    def set(self, learner: str, avg: float) -> None:
        self._data.pop(learner, None)
        self._data[learner] = avg
        if len(self._data) > self.limit:
            for old in list(self._data)[: self.limit // 10]:
                del self._data[old]

    def __len__(self) -> int:
        return len(self._data)


class CoachLoop:
    def __init__(
        self,
        store: CoachStore,
        training: TrainingApi,
        ownership: ShardOwnership,
        *,
        meta: MetaBacklog | None = None,
        meta_backlog_limit: int = 8,
    ) -> None:
        self.store = store
        self.training = training
        self.ownership = ownership
        self.meta = meta
        self.meta_backlog_limit = meta_backlog_limit
        self.averages = AverageCache()

    async def run(self) -> None:
        while True:  # bounded by task cancellation at shutdown
            stop_if_cancelled()
            started = time.monotonic()
            try:
                settings, active, outage = await self.store.loop_inputs()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("coach_read_failed", error=str(exc))
                await asyncio.sleep(IDLE_POLL_S)
                continue
            if not (active and self.ownership.owned()):
                await asyncio.sleep(IDLE_POLL_S)
                continue
            try:
                await self.tick(settings, outage)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a tick never kills the loop
                log.exception("coach_tick_failed")
                await self._note(f"tick failed: {exc.__class__.__name__}: {exc}")
            await self._sleep_rest(started, settings)

    async def _sleep_rest(self, started: float, settings: CoachSettings) -> None:
        # Sleep what is left of the live interval, in slices, re-reading the settings so that a
        # shorter interval set meanwhile applies at once (bounded: ends when the interval does).
        interval = settings.live_interval_ms / 1000
        while True:
            remaining = interval - (time.monotonic() - started)
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, SLEEP_SLICE_S))
            if remaining > SLEEP_SLICE_S:
                try:
                    fresh, active, _ = await self.store.loop_inputs()
                except Exception:
                    continue
                if not active:
                    return
                interval = fresh.live_interval_ms / 1000

    async def _note(self, action: str) -> None:
        try:
            await self.store.note_action(action)
        except Exception:  # Redis away: the next tick notes its own
            log.warning("coach_state_write_failed")

    # ---- one tick ----------------------------------------------------------------------------
    async def tick(self, settings: CoachSettings, outage: str | None = None) -> TickSummary:
        """One tick; `outage` is the training outage recorded before it. Returns its summary."""
        tick_started = time.perf_counter()
        if self.meta is not None:
            # Meta triggers first: hold new rounds (bounded: at most two intervals) while a wave
            # of readiness transitions is being served.
            await self.meta.wait_backlog_below(
                self.meta_backlog_limit, 2 * settings.live_interval_ms / 1000
            )
        now = now_ms()
        # The shards as of now; one lost during the tick is refused by its fence, not by this
        # snapshot (a stall can outlast any local check).
        owned = self.ownership.owned()
        promoted, refused = await self.store.promote_due(now, owned)
        owned = owned.difference(refused)
        lane = settings.fastLane
        # Sized to the owned queues when coverageTarget is on (one more round trip, only then).
        needing = await self.store.queued(owned) if settings.coverageTarget > 0 else None
        size = tick_size(settings, needing)
        picks = await self.store.pick(
            size.learners,
            owned,
            use_fast_lane=lane.enabled,
            auto_window_s=lane.windowS if lane.auto else None,
            at_ms=now,
        )
        tick_plan = plan(picks, settings, self.averages.get, size.per_call)
        outcomes = await self.call(tick_plan.calls, settings.live_micro_batches)
        result = summarize(
            picks,
            tick_plan,
            outcomes,
            settings=settings,
            promoted=promoted,
            outage=outage,
            at_ms=now,
            tick_ms=(time.perf_counter() - tick_started) * 1000,
            average_of=self.averages.get,
        )
        if needing is not None and picks:
            result.summary["learnersPerTick"] = size.learners
        for learner, avg in result.averages.items():
            self.averages.set(learner, avg)
        for outcome in outcomes:
            for err in outcome.errors[:3]:
                log.info("coach_learner_error", **{k: err.get(k) for k in ("learner", "code")})
        fenced = await self.store.record_tick(result, owned)
        if fenced or refused:
            log.warning("coach_shards_fenced", shards=sorted({*fenced, *refused}))
        if result.outage_started is not None:
            log.warning("coach_training_outage", error=result.outage_started)
        return result.summary

    async def call(self, calls: Sequence[Call], concurrency: int) -> list[BatchOutcome]:
        """Run the calls, at most `concurrency` at once; outcomes in the order of `calls`."""
        gate = asyncio.Semaphore(concurrency)

        async def one(call: Call) -> BatchOutcome:
            learners = [x for x, _ in call]
            async with gate:
                return await self.training.run_batch(learners, call[0][1], self.fences(learners))

        return list(await asyncio.gather(*(one(call) for call in calls)))

    def fences(self, learners: Sequence[str]) -> dict[str, int] | None:
        """The fencing token of each learner's shard, as training's `fences` field wants them
        (None when this replica's ownership is unfenced: a single coach over every shard)."""
        fences: dict[str, int] = {}
        for learner in learners:
            shard = self.store.keys.shard_of(learner)
            token = self.ownership.token(shard)
            if token is not None:
                fences[str(shard)] = token
        return fences or None
