"""One coach tick without I/O: which calls to make (`plan`) and what they did (`summarize`).

The loop reads the picks, runs the planned calls through training and hands the outcomes here;
the `TickResult` is what the store records, in one pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict

from services.coach import scheduler
from services.coach.scheduler import Pick
from services.coach.settings_store import CoachSettings
from services.coach.training_api import BatchOutcome

AverageOf = Callable[[str], float | None]  # a learner's last known average mastery
Call = list[tuple[str, int]]  # one training call: (learner, rounds), all with the same rounds


@dataclass(frozen=True, slots=True)
class TickPlan:
    calls: list[Call]
    aggressive: int  # learners given aggressive rounds (below the aggressive threshold)

    def rounds_of(self) -> dict[str, int]:
        return {learner: rounds for call in self.calls for learner, rounds in call}


class TickSummary(TypedDict):
    """The `lastStatus` document. A tick with no learners to coach writes only the first three."""

    needing: int
    promoted: int
    rounds: int
    coached: NotRequired[int]
    calls: NotRequired[int]
    failedCalls: NotRequired[int]
    learnerErrors: NotRequired[int]
    fenced: NotRequired[int]  # learners of shards another replica took during the tick
    becameReady: NotRequired[int]
    avgMastery: NotRequired[float | None]  # None when no coached learner's average is known
    tickMs: NotRequired[float]
    learnersPerTick: NotRequired[int]  # what the tick was sized to, with coverageTarget on


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one tick did: the status it leaves and every write the store makes for it."""

    at_ms: int  # when the tick started
    summary: TickSummary  # the `lastStatus` document (and the tick's return value)
    action: str
    rounds: int = 0
    learner_errors: int = 0
    failed_calls: int = 0
    fenced: int = 0
    coached: list[str] = field(default_factory=list)  # sorted
    advanced: list[Pick] = field(default_factory=list)  # picks whose pass moves on
    weight: float = 1.0
    # The rounds each pick was given: its pass moves on in proportion (scheduler.stride).
    rounds_of: dict[str, int] = field(default_factory=dict)
    ready: list[str] = field(default_factory=list)  # made ready: they leave the fast lane
    close: list[str] = field(default_factory=list)  # close to readiness: may enter it
    window_s: int = 600  # the fast lane's window (fastLane.windowS)
    auto_max: int = 0  # the fleet-wide bound on automatic members (fastLane.autoMax)
    outage_started: str | None = None  # training just became unreachable: the first error
    outage_over: bool = False  # training answered again after a recorded outage
    averages: dict[str, float] = field(default_factory=dict)  # as training reported them


@dataclass(frozen=True, slots=True)
class TickSize:
    learners: int  # learners to pick this tick
    per_call: int  # learners per micro-batch (a training call, before the 1000-round cut)


def tick_size(settings: CoachSettings, needing: int | None) -> TickSize:
    """How many learners a tick coaches. The fixed pace (microBatchesPerTick × batchSize) unless
    `coverageTarget` is set and the queues' size (`needing`) is known: then enough that every
    learner needing coaching is coached once a minute at that share, at the live interval,
    bounded by `maxLearnersPerTick`. The micro-batches stay `microBatchesPerTick` calls in
    flight; they grow instead of multiplying, so a bigger tick costs no more HTTP exchanges."""
    micro, batch = settings.live_micro_batches, settings.live_batch_size
    fixed = micro * batch
    if settings.coverageTarget <= 0 or not needing:
        return TickSize(fixed, batch)
    per_minute = needing * settings.coverageTarget
    wanted = math.ceil(per_minute * settings.live_interval_ms / 60_000)
    learners = max(fixed, min(settings.maxLearnersPerTick, wanted))
    return TickSize(learners, max(batch, math.ceil(learners / micro)))


def plan(
    picks: Sequence[Pick],
    settings: CoachSettings,
    average_of: AverageOf,
    per_call: int | None = None,
) -> TickPlan:
    """Each pick's rounds (from its last known average), cut into training calls of `per_call`
    learners (default: the live batch size)."""
    aggressive = 0
    assignments: list[tuple[str, int]] = []
    for p in picks:
        avg = average_of(p.learner)
        if settings.aggressiveMode and (avg or 0.0) < settings.aggressiveThreshold:
            aggressive += 1
        rounds = scheduler.rounds_for(
            avg,
            max_rounds=settings.maxRoundsPerCycle,
            aggressive_mode=settings.aggressiveMode,
            aggressive_threshold=settings.aggressiveThreshold,
            aggressive_multiplier=settings.aggressiveMultiplier,
            hyper_mode=settings.hyperMode,
        )
        assignments.append((p.learner, rounds))
    size = per_call if per_call is not None else settings.live_batch_size
    return TickPlan(scheduler.plan_calls(assignments, size), aggressive)


def reported_averages(outcomes: Sequence[BatchOutcome]) -> dict[str, float]:
    """Each learner's latest average in training's answers, in the order last reported."""
    averages: dict[str, float] = {}
    for outcome in outcomes:
        if outcome.upstream_error is not None:
            continue
        for r in outcome.rounds:
            avg = r.get("avg")
            if isinstance(avg, int | float):
                learner = str(r.get("learner"))
                averages.pop(learner, None)
                averages[learner] = float(avg)
    return averages


def readiness(
    outcomes: Sequence[BatchOutcome], settings: CoachSettings
) -> tuple[list[str], list[str]]:
    """(learners a round left ready, learners close to readiness) from training's answers: each
    learner's last round decides. Close: not ready, and an average mastery of at least
    `minAvgMastery - fastLane.autoMargin` (the readiness threshold, less the margin). Close
    learners are listed only while the fast lane and its automatic rule are on; the ready ones
    always (they leave the lane whatever its switches)."""
    last: dict[str, tuple[bool, float | None]] = {}
    for outcome in outcomes:
        if outcome.upstream_error is not None:
            continue
        for r in outcome.rounds:
            avg = r.get("avg")
            level = float(avg) if isinstance(avg, int | float) else None
            last[str(r.get("learner"))] = (bool(r.get("ready")), level)
    ready = sorted(x for x, (is_ready, _) in last.items() if is_ready)
    close: list[str] = []
    lane = settings.fastLane
    if lane.enabled and lane.auto:
        bar = settings.minAvgMastery - lane.autoMargin
        close = sorted(
            x
            for x, (is_ready, avg) in last.items()
            if not is_ready and avg is not None and avg >= bar
        )
    return ready, close


def summarize(
    picks: Sequence[Pick],
    tick_plan: TickPlan,
    outcomes: Sequence[BatchOutcome],
    *,
    settings: CoachSettings,
    promoted: int,
    outage: str | None,
    at_ms: int,
    tick_ms: float,
    average_of: AverageOf,
) -> TickResult:
    """The tick's result from the calls' outcomes. `outage` is the training outage recorded
    before the tick; `average_of` gives the averages known before it."""
    if not picks:
        idle: TickSummary = {"needing": 0, "promoted": promoted, "rounds": 0}
        return TickResult(at_ms, idle, "no learners need coaching")

    committed = 0
    became_ready = 0
    learner_errors = 0
    fenced = 0
    attempted: set[str] = set()
    coached: set[str] = set()
    upstream_errors: list[str] = []
    for outcome in outcomes:
        if outcome.upstream_error is not None:
            upstream_errors.append(outcome.upstream_error)
            continue
        # A fenced learner's shard is another replica's now: its pass is the new owner's to
        # advance, and nothing was committed for it.
        attempted.update(set(outcome.learners).difference(outcome.fenced))
        fenced += len(outcome.fenced)
        learner_errors += len(outcome.errors)
        for r in outcome.rounds:
            committed += 1
            coached.add(str(r.get("learner")))
            if r.get("became_ready"):
                became_ready += 1
    averages = reported_averages(outcomes)
    ready, close = readiness(outcomes, settings)
    latest = [averages[x] if x in averages else average_of(x) for x in coached]
    known = [avg for avg in latest if avg is not None]

    label = " HYPER" if settings.hyperMode else (" aggressive" if tick_plan.aggressive else "")
    calls = len(tick_plan.calls)
    summary: TickSummary = {
        "needing": len(picks),
        "coached": len(coached),
        "rounds": committed,
        "calls": calls,
        "failedCalls": len(upstream_errors),
        "learnerErrors": learner_errors,
        "becameReady": became_ready,
        "promoted": promoted,
        "avgMastery": round(sum(known) / len(known), 1) if known else None,
        "tickMs": round(tick_ms, 1),
    }
    if fenced:
        summary["fenced"] = fenced
    if upstream_errors and not committed:
        action = f"training unavailable: {upstream_errors[0]}"
    else:
        action = (
            f"micro-batch {calls - len(upstream_errors)} calls, {committed} rounds for "
            f"{len(coached)} learners (tick +{committed}{label})"
        )
        if outage is not None and not upstream_errors:
            action += "; training is back"
    return TickResult(
        at_ms,
        summary,
        action,
        rounds=committed,
        learner_errors=learner_errors,
        failed_calls=len(upstream_errors),
        fenced=fenced,
        coached=sorted(coached),
        advanced=[p for p in picks if p.learner in attempted],
        weight=settings.live_weight,
        rounds_of=tick_plan.rounds_of(),
        ready=ready,
        close=close,
        window_s=settings.fastLane.windowS,
        auto_max=settings.fastLane.autoMax,
        outage_started=upstream_errors[0] if upstream_errors and outage is None else None,
        outage_over=outage is not None and not upstream_errors,
        averages=averages,
    )
