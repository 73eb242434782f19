"""Stride scheduling over the coach queues (`keys.coach_queue(shard)`).

Each shard's queue is a sorted set of its active learners that need coaching, scored by a virtual
pass; a replica merges the queues of the shards it owns by pass (CoachStore.pick).
The round-commit script adds and removes learners in the same atomic step that decides readiness;
the coach only reads the head of the queue and advances passes. Each tick the learners with the
lowest pass are coached, then each coached learner's pass grows by its stride: the rounds it was
given, divided by `weight` in the fast lane. Under contention the passes stay level, so a
fast-lane learner gets `weight` times the rounds of a normal one, whatever rounds each is given a
pick (aggressive and hyper multipliers differ between learners). Without contention (everyone
fits in one tick) everyone is coached every tick.

Who is in the fast lane (CoachStore.pick): learners pinned in by an operator, and automatic
members close to readiness (settings_store.FastLaneSettings), unless pinned out.

This module is the arithmetic (strides, rounds per learner, calls per tick); the queue's reads
and writes are `CoachStore.pick` and `CoachStore.record_tick`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_ROUNDS_PER_LEARNER = 50  # the training batch endpoint's bound per learner


@dataclass(frozen=True, slots=True)
class Pick:
    learner: str
    virtual_pass: float
    fast: bool
    shard: int = 0  # the learner's shard, whose queue holds its pass


@dataclass(frozen=True, slots=True)
class PinChanges:
    """An operator's change of fast-lane pins (learner ids, each in one list at most)."""

    pin: list[str]  # pinned in
    unpin: list[str]  # pins dropped: the automatic rule applies again
    exclude: list[str]  # pinned out

    def __bool__(self) -> bool:
        return bool(self.pin or self.unpin or self.exclude)

    def all(self) -> list[str]:
        return [*self.pin, *self.unpin, *self.exclude]


def stride(fast: bool, weight: float, rounds: int = 1) -> float:
    """How far a coached learner's pass moves on: the rounds it was given, divided by `weight` in
    the fast lane. Proportional to rounds, not picks, so that the weight shares rounds: a normal
    learner given 8 aggressive rounds a pick and a fast one given 4 still end at 1 : weight."""
    return rounds / weight if fast else float(rounds)


def rounds_for(
    avg: float | None,
    *,
    max_rounds: int,
    aggressive_mode: bool,
    aggressive_threshold: float,
    aggressive_multiplier: float,
    hyper_mode: bool,
) -> int:
    """Rounds for one learner this tick: `maxRoundsPerCycle`, ×`aggressiveMultiplier` while its
    average is below `aggressiveThreshold` (an unknown average counts as 0: a learner the coach
    has not seen yet is treated as a newcomer), ×2 in hyper mode (whatever the average: hyper
    mode is the operator's "go faster" switch), capped at 50."""
    rounds = float(max_rounds)
    level = 0.0 if avg is None else avg
    if aggressive_mode and level < aggressive_threshold:
        rounds = math.floor(rounds * aggressive_multiplier)
    if hyper_mode:
        rounds *= 2
    return max(1, min(MAX_ROUNDS_PER_LEARNER, int(rounds)))


MAX_ROUNDS_PER_CALL = 1000  # the training batch endpoint's bound on learners × rounds


def plan_calls(assignments: list[tuple[str, int]], batch_size: int) -> list[list[tuple[str, int]]]:
    """Split (learner, rounds) into micro-batches of at most `batch_size` learners, then into
    training calls: one call has one `rounds_per_learner`, so a micro-batch is grouped by rounds
    and chunked so that learners × rounds ≤ 1000."""
    calls: list[list[tuple[str, int]]] = []
    for start in range(0, len(assignments), batch_size):
        micro = assignments[start : start + batch_size]
        by_rounds: dict[int, list[str]] = {}
        for learner, rounds in micro:
            by_rounds.setdefault(rounds, []).append(learner)
        for rounds, learners in by_rounds.items():
            per_call = max(1, MAX_ROUNDS_PER_CALL // rounds)
            for i in range(0, len(learners), per_call):
                calls.append([(learner, rounds) for learner in learners[i : i + per_call]])
    return calls
