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
from typing import Any

import orjson
from redis.asyncio import Redis

from services.coach import scheduler, stats
from services.coach.lease import Lease
from services.coach.meta_trigger import MetaTrigger
from services.coach.settings_store import CoachSettings, from_fields
from services.coach.status import (
    ACTIVE,
    LAST_STATUS,
    action_fields,
    now_ms,
    outage_field,
    outage_value,
)
from services.coach.training_api import BatchOutcome, error_of, run_batch
from shared.errors import UpstreamError
from shared.http_client import ServiceClient
from shared.keys import Keys
from shared.logging import get_logger
from shared.scripts import Scripts

log = get_logger(__name__)

IDLE_POLL_S = 0.25  # how often an inactive or standby coach looks again
SLEEP_SLICE_S = 0.25  # the interval is re-read at least this often while sleeping
MAX_TRACKED_AVERAGES = 200_000


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
        redis: Redis,
        keys: Keys,
        scripts: Scripts,
        client: ServiceClient,
        lease: Lease,
        *,
        call_timeout_s: float = 5.0,
        meta: MetaTrigger | None = None,
        meta_backlog_limit: int = 8,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.scripts = scripts
        self.client = client
        self.lease = lease
        self.call_timeout_s = call_timeout_s
        self.meta = meta
        self.meta_backlog_limit = meta_backlog_limit
        self.averages = AverageCache()

    async def read(self) -> tuple[CoachSettings, bool, str | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.coach_settings)
            pipe.hmget(self.keys.coach_state, [ACTIVE, outage_field("training")])
            raw, (active, outage) = await pipe.execute()
        return from_fields(raw).settings, active == "1", outage

    async def run(self) -> None:
        while True:  # bounded by task cancellation at shutdown
            started = time.monotonic()
            try:
                settings, active, outage = await self.read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("coach_read_failed", error=str(exc))
                await asyncio.sleep(IDLE_POLL_S)
                continue
            if not (active and self.lease.is_leader):
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
                    fresh, active, _ = await self.read()
                except Exception:
                    continue
                if not active:
                    return
                interval = fresh.live_interval_ms / 1000

    async def _note(self, action: str) -> None:
        try:
            await self.redis.hset(self.keys.coach_state, mapping=action_fields(action))
        except Exception:
            log.warning("coach_state_write_failed")

    # ---- one tick ----------------------------------------------------------------------------
    async def tick(self, settings: CoachSettings, outage: str | None = None) -> dict[str, Any]:
        tick_started = time.perf_counter()
        if self.meta is not None:
            # Meta triggers first: hold new rounds (bounded: at most two intervals) while a wave
            # of readiness transitions is being served.
            await self.meta.wait_backlog_below(
                self.meta_backlog_limit, 2 * settings.live_interval_ms / 1000
            )
        now = now_ms()
        promoted = await scheduler.promote_due(self.redis, self.keys, self.scripts, now)
        micro, batch = settings.live_micro_batches, settings.live_batch_size
        weight = settings.live_weight
        picks = await scheduler.pick(
            self.redis, self.keys, micro * batch, use_fast_lane=settings.fastLane.enabled
        )
        if not picks:
            summary = {"needing": 0, "promoted": promoted, "rounds": 0}
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.keys.coach_stats, "ticks", 1)
                stats.record_coached(pipe, self.keys, [], now)
                pipe.hset(
                    self.keys.coach_state,
                    mapping={
                        **action_fields("no learners need coaching"),
                        LAST_STATUS: orjson.dumps(summary).decode(),
                    },
                )
                await pipe.execute()
            return summary

        aggressive = 0
        assignments: list[tuple[str, int]] = []
        for p in picks:
            avg = self.averages.get(p.learner)
            if settings.aggressiveMode and (avg or 0.0) < settings.aggressiveThreshold:
                aggressive += 1
            assignments.append(
                (
                    p.learner,
                    scheduler.rounds_for(
                        avg,
                        max_rounds=settings.maxRoundsPerCycle,
                        aggressive_mode=settings.aggressiveMode,
                        aggressive_threshold=settings.aggressiveThreshold,
                        aggressive_multiplier=settings.aggressiveMultiplier,
                        hyper_mode=settings.hyperMode,
                    ),
                )
            )
        calls = scheduler.plan_calls(assignments, batch)
        gate = asyncio.Semaphore(micro)
        outcomes = await asyncio.gather(*(self._call(gate, call) for call in calls))

        committed = 0
        became_ready = 0
        learner_errors = 0
        avgs: list[float] = []
        attempted: set[str] = set()
        coached: set[str] = set()
        upstream_errors: list[str] = []
        for outcome in outcomes:
            if outcome.upstream_error is not None:
                upstream_errors.append(outcome.upstream_error)
                continue
            attempted.update(outcome.learners)
            learner_errors += len(outcome.errors)
            for r in outcome.rounds:
                committed += 1
                learner = str(r.get("learner"))
                coached.add(learner)
                if r.get("became_ready"):
                    became_ready += 1
                avg = r.get("avg")
                if isinstance(avg, int | float):
                    self.averages.set(learner, float(avg))
        for learner in coached:
            value = self.averages.get(learner)
            if value is not None:
                avgs.append(value)
        for outcome in outcomes:
            for err in outcome.errors[:3]:
                log.info("coach_learner_error", **{k: err.get(k) for k in ("learner", "code")})

        label = " HYPER" if settings.hyperMode else (" aggressive" if aggressive else "")
        summary = {
            "needing": len(picks),
            "coached": len(coached),
            "rounds": committed,
            "calls": len(calls),
            "failedCalls": len(upstream_errors),
            "learnerErrors": learner_errors,
            "becameReady": became_ready,
            "promoted": promoted,
            "avgMastery": round(sum(avgs) / len(avgs), 1) if avgs else None,
            "tickMs": round((time.perf_counter() - tick_started) * 1000, 1),
        }
        if upstream_errors and not committed:
            action = f"training unavailable: {upstream_errors[0]}"
        else:
            action = (
                f"micro-batch {len(calls) - len(upstream_errors)} calls, {committed} rounds for "
                f"{len(coached)} learners (tick +{committed}{label})"
            )
            if outage is not None and not upstream_errors:
                action += "; training is back"
        advanced = [p for p in picks if p.learner in attempted]
        state_fields: dict[str, str] = {
            **action_fields(action),
            LAST_STATUS: orjson.dumps(summary).decode(),
        }
        if upstream_errors and outage is None:
            state_fields[outage_field("training")] = outage_value(now, upstream_errors[0])
        async with self.redis.pipeline(transaction=False) as pipe:
            stats.record_rounds(pipe, self.keys, committed, now / 1000, "roundsRun")
            pipe.hincrby(self.keys.coach_stats, "ticks", 1)
            if learner_errors:
                pipe.hincrby(self.keys.coach_stats, "learnerErrors", learner_errors)
            if upstream_errors:
                pipe.hincrby(self.keys.coach_stats, "failedCalls", len(upstream_errors))
            stats.record_coached(pipe, self.keys, sorted(coached), now)
            scheduler.queue_advance(pipe, self.keys, advanced, weight)
            pipe.hset(self.keys.coach_state, mapping=state_fields)
            if outage is not None and not upstream_errors:
                pipe.hdel(self.keys.coach_state, outage_field("training"))
            await pipe.execute()
        if upstream_errors and outage is None:
            log.warning("coach_training_outage", error=upstream_errors[0])
        return summary

    async def _call(self, gate: asyncio.Semaphore, call: list[tuple[str, int]]) -> BatchOutcome:
        learners = [learner for learner, _ in call]
        rounds = call[0][1]
        outcome = BatchOutcome(learners)
        async with gate:
            try:
                status, body = await run_batch(
                    self.client, learners, rounds, timeout_s=self.call_timeout_s
                )
            except UpstreamError as exc:
                outcome.upstream_error = exc.message
                return outcome
        outcome.status = status
        if status == 200 and isinstance(body, dict):
            outcome.rounds = list(body.get("rounds") or [])
            outcome.errors = list(body.get("errors") or [])
        elif status >= 500 or status == 429:
            code, message = error_of(body, status)
            outcome.upstream_error = f"training answered {status} {code}: {message}"
        else:
            code, message = error_of(body, status)
            outcome.errors = [{"learner": x, "code": code, "message": message} for x in learners]
        return outcome
