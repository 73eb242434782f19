"""Stride scheduling over the coach queues (`keys.coach_queue(shard)`).

Each shard's queue is a sorted set of its active learners that need coaching, scored by a virtual
pass; a replica merges the queues of the shards it owns by pass (CoachStore.pick).
The round-commit script adds and removes learners in the same atomic step that decides readiness;
the coach only reads the head of the queue and advances passes. Each tick the learners with the
lowest pass are coached, then each coached learner's pass grows by its stride: `1/weight` in the
fast lane, `1` otherwise. Under contention a fast-lane learner therefore comes round `weight`
times as often as a normal one — the fast lane's share of rounds per learner is `weight`× the
normal lane's. Without contention (everyone fits in one tick) everyone is coached every tick.

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


def stride(fast: bool, weight: float) -> float:
    return 1.0 / weight if fast else 1.0


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
