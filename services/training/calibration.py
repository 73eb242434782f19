"""Calibration: lifting a learner's displayed mastery of a topic to a threshold, the original
fleet's `calibrate` and `force-masteries`. Pure (no I/O); the store writes the result.

It sets what the fleet *shows* and what readiness reads (the mastery, recent scores and
confidence), never the latent skill's value: the next rounds grade the learner on its real skill, so a
calibrated mastery the learner cannot sustain drifts back down, and the coach coaches it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.training import learner_model
from services.training.curriculum import Curriculum
from services.training.grader import js_round
from shared.learner_state import SCORE_WINDOW, DomainState, LearnerState

DEFAULT_MIN_ATTEMPTS = 2


@dataclass(frozen=True, slots=True)
class Rule:
    threshold: int
    min_attempts: int
    delta: int
    force: bool


def adjust(state: LearnerState, cur: Curriculum, now: float, rule: Rule) -> list[dict[str, Any]]:
    """Lift each qualifying topic to `rule.threshold` in `state` (changed in place); answers
    `[{topic, from, to}]`, empty when nothing qualified. A topic qualifies when its displayed
    mastery is below the threshold and, unless forced, it has `min_attempts` attempts and is
    within `delta` of the threshold."""
    adjusted: list[dict[str, Any]] = []
    for topic in cur.topics:
        d = state.domain(topic.key)
        shown = learner_model.displayed_mastery(d, now)
        if js_round(shown) >= rule.threshold:
            continue
        if not rule.force and (
            d.attempts < rule.min_attempts or rule.threshold - shown > rule.delta
        ):
            continue
        state.domains[topic.key] = _lifted(d, now, rule.threshold)
        adjusted.append({"topic": topic.key, "from": js_round(shown), "to": rule.threshold})
    return adjusted


def _lifted(d: DomainState, now: float, threshold: int) -> DomainState:
    attempts = max(1, d.attempts)
    # Displayed mastery decays with the recall factor since last practice, so a topic last
    # practised long ago could not show the threshold whatever its stored mastery. The topic is
    # rebased to now instead: skill × recall-so-far at last = now is the same effective skill (the
    # decay is exponential, hence memoryless), and the mastery is stored as the threshold. What
    # changes is that the topic counts as practised now (lastPracticed, the spacing of its next
    # practice).
    lifted = DomainState(
        skill=learner_model.effective_skill(d, now),
        half_life=d.half_life,
        last=now,
        attempts=attempts,
        completed=d.completed,
        mastery=float(threshold),
        confidence=d.confidence,
        next_review=d.next_review,
        scores=[threshold] * min(attempts, SCORE_WINDOW),
    )
    lifted.confidence = max(60.0, min(95.0, learner_model.confidence(lifted)))
    return lifted
