"""The auto-coach loop: one task, sequential ticks (never overlapping), each sleeping the rest
of the live interval. Only the lease holder ticks, and only while `active` (in Redis) is set.

A tick: move due reviews back into the queue; take the k = microBatchesPerTick × batchSize
learners with the lowest pass (stride scheduling, see scheduler.py); give each its rounds
(maxRoundsPerCycle, aggressive/hyper multipliers from its last known average); run them through
training's batch endpoint, up to microBatchesPerTick calls at once, each with a timeout; then in
one pipeline advance the coached learners' passes, count rounds, mark them coached and record
lastAction/lastStatus. A training outage is recorded (outage.training, lastAction) and the loop
keeps ticking; it clears itself on the first tick that reaches training again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from services.coach.lease import Leadership
from services.coach.settings_store import CoachSettings
from services.coach.store import CoachStore, Fenced
from services.coach.tick import Call, TickSummary, plan, summarize
from services.coach.training_api import BatchOutcome, TrainingApi
from shared.clock import now_ms
from shared.logging import get_logger

log = get_logger(__name__)

IDLE_POLL_S = 0.25  # how often an inactive or standby coach looks again
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
        leadership: Leadership,
        *,
        meta: MetaBacklog | None = None,
        meta_backlog_limit: int = 8,
    ) -> None:
        self.store = store
        self.training = training
        self.leadership = leadership
        self.meta = meta
        self.meta_backlog_limit = meta_backlog_limit
        self.averages = AverageCache()

    async def run(self) -> None:
        while True:  # bounded by task cancellation at shutdown
            started = time.monotonic()
            try:
                settings, active, outage = await self.store.loop_inputs()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("coach_read_failed", error=str(exc))
                await asyncio.sleep(IDLE_POLL_S)
                continue
            if not (active and self.leadership.is_leader):
                await asyncio.sleep(IDLE_POLL_S)
                continue
            try:
                await self.tick(settings, outage)
            except asyncio.CancelledError:
                raise
            except Fenced as exc:
                # Another replica acquired the lease while this tick ran (a stall): its record
                # was refused whole; the lease task notices on its next renewal.
                log.warning("coach_tick_fenced", error=str(exc))
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
        except Exception:  # Redis away, or Fenced: a newer leader notes its own
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
        promoted = await self.store.promote_due(now)
        picks = await self.store.pick(
            settings.live_micro_batches * settings.live_batch_size,
            use_fast_lane=settings.fastLane.enabled,
        )
        tick_plan = plan(picks, settings, self.averages.get)
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
        for learner, avg in result.averages.items():
            self.averages.set(learner, avg)
        for outcome in outcomes:
            for err in outcome.errors[:3]:
                log.info("coach_learner_error", **{k: err.get(k) for k in ("learner", "code")})
        await self.store.record_tick(result)
        if result.outage_started is not None:
            log.warning("coach_training_outage", error=result.outage_started)
        return result.summary

    async def call(self, calls: Sequence[Call], concurrency: int) -> list[BatchOutcome]:
        """Run the calls, at most `concurrency` at once; outcomes in the order of `calls`."""
        gate = asyncio.Semaphore(concurrency)

        async def one(call: Call) -> BatchOutcome:
            async with gate:
                return await self.training.run_batch([x for x, _ in call], call[0][1])

        return list(await asyncio.gather(*(one(call) for call in calls)))
