"""One training round, pure: selection, one problem per trained topic, practice, due reviews and
the readiness inputs the commit decides readiness from. No I/O; the store reads and commits.

Determinism. A round's draws come from random.Random seeded by (learner seed, learner round
number) and the round's `now`; the fleet-wide round id is only known inside the commit, so it
cannot seed the draws.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from services.training import learner_model, selection
from services.training.curriculum import Curriculum
from services.training.grader import feedback
from shared.learner_state import LearnerState


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
    state: LearnerState, curriculum: Curriculum, now: float, *, detail: bool = False
) -> RoundOutcome:
    """Run one round on `state` in place (selection, problems, practice, reviews)."""
    rng = round_rng(state.seed, state.rounds)
    by_key = curriculum.by_key
    trained = selection.select(state, curriculum, now)
    scores: dict[str, int] = {}
    results: list[dict[str, Any]] = []

    def attempt(key: str, review: bool, background: bool) -> None:
        topic = by_key[key]
        d = state.domain(key)
        problem, score, matched = learner_model.solve(rng, topic, d, now)
        learner_model.practise(
            state, key, score, now, learner_model.related(key, by_key), review_interval=review
        )
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
    bg = selection.background_pick(state, curriculum)
    if bg is not None and bg not in trained:
        attempt(bg, False, True)
        trained.append(bg)
    for key in selection.due_reviews(state, curriculum, trained, now):
        attempt(key, True, False)
    state.rounds += 1
    avg, below, next_review_ms = learner_model.readiness_inputs(
        state, curriculum.topics, selection.target_threshold(state), now
    )
    return RoundOutcome(state.rounds, trained, scores, avg, below, next_review_ms, results)


def new_learner_state(learner: str, region: str, active: bool, now: float) -> LearnerState:
    return LearnerState(
        id=learner,
        seed=secrets.randbits(31),
        region=region,
        created=now,
        active=active,
        started_at=now if active else 0.0,
    )
